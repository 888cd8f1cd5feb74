"""The REST API at /api/v1: one NinjaAPI, every app's router, one error body everywhere."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.translation import gettext as _
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, AuthorizationError, HttpError, ValidationError

from kehu import __version__
from kehu.accounts.api import router as accounts_router
from kehu.accounts.auth import ActiveSessionAuth, BearerTokenAuth
from kehu.analytics.api import router as analytics_router
from kehu.commerce.api import router as commerce_router
from kehu.core.api import router as core_router
from kehu.core.errors import DomainError
from kehu.customers.api import router as customers_router
from kehu.customers.selfservice_api import router as selfservice_router
from kehu.dataops.api import router as dataops_router
from kehu.loyalty.api import router as loyalty_router
from kehu.marketing.api import router as marketing_router

api = NinjaAPI(
    title="Kehu API",
    version=__version__,
    description="Customer records, membership cards and loyalty. Authenticate with `Authorization: Bearer <token>` "
    "(create one with `kehu tokens create` or on the Tokens page).",
    auth=[BearerTokenAuth(), ActiveSessionAuth()],
    urls_namespace="api",
    docs_url="/docs",
    openapi_url="/openapi.json",
)


def error_response(
    request: HttpRequest,
    *,
    status: int,
    code: str,
    message: str,
    fields: dict[str, list[str]] | None = None,
    details: dict[str, Any] | None = None,
) -> HttpResponse:
    body: dict[str, Any] = {"code": code, "message": message, "fields": fields or {}}
    if details:
        body["details"] = details
    return api.create_response(request, body, status=status)


def _field_name(location: Any) -> str:
    parts = [str(part) for part in location]
    # ("body", "payload", "username") -> "username"; ("query", "limit") -> "limit"
    if parts and parts[0] in {"body", "query", "path", "header", "cookie", "form"}:
        parts = parts[1:]
    if len(parts) > 1 and parts[0] == "payload":
        parts = parts[1:]
    return ".".join(parts) or "body"


@api.exception_handler(ValidationError)
def on_validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    fields: dict[str, list[str]] = {}
    for error in exc.errors:
        fields.setdefault(_field_name(error.get("loc", ())), []).append(str(error.get("msg", "")))
    first_field, first_messages = next(iter(fields.items()), ("body", [""]))
    return error_response(
        request,
        status=422,
        code="validation_error",
        message=_("%(field)s: %(reason)s") % {"field": first_field, "reason": first_messages[0]},
        fields=fields,
    )


@api.exception_handler(DomainError)
def on_domain_error(request: HttpRequest, exc: DomainError) -> HttpResponse:
    return error_response(
        request, status=exc.status, code=exc.code, message=exc.message, fields=exc.fields, details=exc.context
    )


@api.exception_handler(AuthenticationError)
def on_authentication_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    response = error_response(
        request,
        status=401,
        code="unauthenticated",
        message=_("Sign in or send a valid API token (Authorization: Bearer ...)."),
    )
    response["WWW-Authenticate"] = "Bearer"
    return response


@api.exception_handler(AuthorizationError)
def on_authorization_error(request: HttpRequest, exc: AuthorizationError) -> HttpResponse:
    return error_response(
        request, status=403, code="permission_denied", message=_("You do not have permission to do this.")
    )


@api.exception_handler(DjangoPermissionDenied)
def on_permission_denied(request: HttpRequest, exc: DjangoPermissionDenied) -> HttpResponse:
    return error_response(
        request, status=403, code="permission_denied", message=_("You do not have permission to do this.")
    )


@api.exception_handler(ObjectDoesNotExist)
def on_does_not_exist(request: HttpRequest, exc: ObjectDoesNotExist) -> HttpResponse:
    return error_response(request, status=404, code="not_found", message=_("Not found."))


@api.exception_handler(Http404)
def on_not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return error_response(request, status=404, code="not_found", message=_("Not found."))


@api.exception_handler(HttpError)
def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if exc.status_code == 400 and str(exc).startswith("Cannot parse request body"):
        message = _("The request body is not valid JSON.")
        return error_response(
            request, status=422, code="validation_error", message=message, fields={"body": [message]}
        )
    if exc.status_code == 403:
        # ninja's CSRF refusal for session-authenticated writes.
        return error_response(request, status=403, code="csrf_failed", message=str(exc))
    return error_response(request, status=exc.status_code, code="http_error", message=str(exc))


api.add_router("/", core_router)
api.add_router("/", accounts_router)
# Before the customers router, whose /customers/{code} would catch /customers/duplicates-check.
api.add_router("/", dataops_router)
api.add_router("/", customers_router)
api.add_router("/", selfservice_router)
api.add_router("/", loyalty_router)
api.add_router("/", commerce_router)
api.add_router("/", analytics_router)
api.add_router("/", marketing_router)
