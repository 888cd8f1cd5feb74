"""Pages of the self-service update: the customer's public page and the staff side.

The public page (/s/<token>/) needs no sign-in: the unguessable, signed token in its URL is
the credential. So the URL must not leak: the page sends no Referer anywhere, is never
cached or indexed, loads nothing from elsewhere and runs no script. It is rate-limited per
client address and per link through the shared cache, and answers in the browser's language
unless the visitor picks the other one with ?lang=.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import translation
from django.utils.cache import patch_vary_headers
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from kehu.accounts.models import User
from kehu.core.errors import DomainError, NotFound, PermissionDeniedError, ValidationFailed
from kehu.core.lunar import MONTH_NAMES, LunarDate, format_lunar
from kehu.core.middleware import client_ip
from kehu.core.pagination import keyset_page
from kehu.customers import selfservice
from kehu.customers.models import SelfServiceSubmission, SubmissionStatus
from kehu.customers.selectors import customer_get
from kehu.customers.validation import MAX_ADDRESSES, MAX_EMAILS, MAX_PHONES
from kehu.web.shortcuts import require_permission, wants_partial

PUBLIC_LANGUAGES = ("zh-hans", "en")
QUEUE_PAGE_SIZE = 20
# Blank rows offered below the customer's entries, so they can add one without a script.
SPARE_ROWS = 1


# --- rate limiting ------------------------------------------------------------------------------
def _over_limit(key: str, limit: int, window: int) -> bool:
    """Count one request under ``key`` in the current fixed window; True past ``limit``.

    add() then incr() keeps the count in the shared cache, so every web process of the
    installation counts together (settings.CACHES says where).
    """
    bucket = f"selfservice:{key}:{int(time.time() // window)}"
    cache.add(bucket, 0, timeout=window)
    try:
        count = cache.incr(bucket)
    except ValueError:  # evicted between add and incr: start again
        cache.set(bucket, 1, timeout=window)
        count = 1
    return count > limit


def _is_rate_limited(request: HttpRequest, token: str) -> bool:
    window = settings.SELF_SERVICE_RATE_WINDOW
    address = client_ip(request) or "unknown"
    # The cache holds a digest of the token, never the token itself.
    token_key = hashlib.sha256(token.encode()).hexdigest()[:32]
    by_address = _over_limit(f"ip:{address}", settings.SELF_SERVICE_MAX_REQUESTS_PER_IP, window)
    by_link = _over_limit(f"link:{token_key}", settings.SELF_SERVICE_MAX_REQUESTS_PER_LINK, window)
    return by_address or by_link


# --- the public page ------------------------------------------------------------------------------
def _language(request: HttpRequest) -> str:
    chosen = request.GET.get("lang", "")
    if chosen in PUBLIC_LANGUAGES:
        return chosen
    current = translation.get_language() or settings.LANGUAGE_CODE
    return "en" if current.startswith("en") else "zh-hans"


def _protected(response: HttpResponse, language: str) -> HttpResponse:
    """Headers every public response carries: the token in the URL must go nowhere."""
    response["Referrer-Policy"] = "no-referrer"
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
    response["Content-Language"] = language
    patch_vary_headers(response, ["Accept-Language", "Cookie"])
    return response


def _public_render(
    request: HttpRequest, template: str, context: Mapping[str, Any], *, language: str, status: int = 200
) -> HttpResponse:
    switch = [
        {"code": code, "name": name, "is_current": code == language, "query": urlencode({"lang": code})}
        for code, name in (("zh-hans", "简体中文"), ("en", "English"))
    ]
    full_context = {**context, "language": language, "language_switch": switch}
    return _protected(render(request, template, full_context, status=status), language)


@dataclass
class FormField:
    name: str
    value: str = ""
    errors: list[str] = field(default_factory=list)


@dataclass
class AddressRow:
    index: int
    province: FormField
    city: FormField
    district: FormField
    street: FormField
    postcode: FormField
    errors: list[str] = field(default_factory=list)

    def parts(self) -> list[tuple[FormField, str, str]]:
        return [
            (self.province, _("Province"), "address-level1"),
            (self.city, _("City"), "address-level2"),
            (self.district, _("District"), "address-level3"),
            (self.street, _("Street and number"), "street-address"),
            (self.postcode, _("Postcode"), "postal-code"),
        ]


@dataclass
class PublicForm:
    """The self-service form's values and per-field errors, read from the record or a POST."""

    phones: list[FormField]
    emails: list[FormField]
    addresses: list[AddressRow]
    birthday: FormField
    lunar_month: FormField
    lunar_day: FormField
    lunar_is_leap: bool
    lunar_errors: list[str]
    consent: bool
    errors: list[str] = field(default_factory=list)
    # Which form row each submitted list entry came from (blank rows are left out).
    phone_rows: list[int] = field(default_factory=list)
    email_rows: list[int] = field(default_factory=list)
    address_rows: list[int] = field(default_factory=list)


def _address_row(index: int, values: Mapping[str, str]) -> AddressRow:
    def part(name: str) -> FormField:
        return FormField(f"address_{index}_{name}", values.get(name, ""))

    return AddressRow(
        index=index,
        province=part("province"),
        city=part("city"),
        district=part("district"),
        street=part("street"),
        postcode=part("postcode"),
    )


def _form_from_record(details: Mapping[str, Any]) -> PublicForm:
    phones = [phone["number"] for phone in details["phones"]]
    emails = list(details["emails"])
    addresses = list(details["addresses"])
    lunar = details["lunar_birthday"]
    return PublicForm(
        phones=[
            FormField(f"phone_{index}", value)
            for index, value in enumerate(_with_spare(phones, MAX_PHONES, minimum=1))
        ],
        emails=[
            FormField(f"email_{index}", value)
            for index, value in enumerate(_with_spare(emails, MAX_EMAILS, minimum=1))
        ],
        addresses=[
            _address_row(index, values)
            for index, values in enumerate(_with_spare(addresses, MAX_ADDRESSES, minimum=1, blank={}))
        ],
        birthday=FormField("birthday", details["birthday"].isoformat() if details["birthday"] else ""),
        lunar_month=FormField("lunar_month", str(lunar["month"]) if lunar else ""),
        lunar_day=FormField("lunar_day", str(lunar["day"]) if lunar else ""),
        lunar_is_leap=bool(lunar and lunar["is_leap_month"]),
        lunar_errors=[],
        consent=details["marketing_consent"] is True,
    )


def _with_spare(values: list[Any], maximum: int, *, minimum: int, blank: Any = "") -> list[Any]:
    count = min(maximum, max(minimum, len(values) + SPARE_ROWS))
    return [*values, *[blank] * (count - len(values))][:count]


def _form_from_post(post: Mapping[str, str]) -> PublicForm:
    """The submitted rows, kept as typed so a refused form shows the customer's own input."""
    phones = [
        FormField(f"phone_{i}", post[f"phone_{i}"].strip()) for i in range(MAX_PHONES) if f"phone_{i}" in post
    ]
    emails = [
        FormField(f"email_{i}", post[f"email_{i}"].strip()) for i in range(MAX_EMAILS) if f"email_{i}" in post
    ]
    addresses = [
        _address_row(
            i,
            {
                part: post.get(f"address_{i}_{part}", "").strip()
                for part in ("province", "city", "district", "street", "postcode")
            },
        )
        for i in range(MAX_ADDRESSES)
        if any(f"address_{i}_{part}" in post for part in ("province", "city", "street"))
    ]
    return PublicForm(
        phones=phones,
        emails=emails,
        addresses=addresses,
        birthday=FormField("birthday", post.get("birthday", "").strip()),
        lunar_month=FormField("lunar_month", post.get("lunar_month", "").strip()),
        lunar_day=FormField("lunar_day", post.get("lunar_day", "").strip()),
        lunar_is_leap=post.get("lunar_is_leap") == "on",
        lunar_errors=[],
        consent=post.get("consent") == "on",
    )


def _data_of(form: PublicForm) -> dict[str, Any]:
    """The form as the service's input; blank rows dropped, and where each entry came from noted."""
    form.phone_rows = [i for i, phone in enumerate(form.phones) if phone.value]
    form.email_rows = [i for i, email in enumerate(form.emails) if email.value]
    form.address_rows = [
        i for i, row in enumerate(form.addresses) if any(part.value for part, _label, _auto in row.parts())
    ]
    lunar: dict[str, Any] | None = None
    if form.lunar_month.value or form.lunar_day.value:
        lunar = {
            "month": form.lunar_month.value,
            "day": form.lunar_day.value,
            "is_leap_month": form.lunar_is_leap,
        }
    return {
        "phones": [form.phones[i].value for i in form.phone_rows],
        "emails": [form.emails[i].value for i in form.email_rows],
        "addresses": [
            {part.name.rsplit("_", 1)[1]: part.value for part, _label, _auto in form.addresses[i].parts()}
            for i in form.address_rows
        ],
        "birthday": form.birthday.value or None,
        "lunar_birthday": lunar,
    }


def _place_errors(form: PublicForm, error: ValidationFailed) -> None:
    """Each refusal next to the field it is about; what has no field goes on top."""
    for key, reasons in error.fields.items():
        parts = key.split(".")
        target: list[str] | None = None
        if parts[0] in ("phones", "emails", "addresses") and len(parts) > 1 and parts[1].isdigit():
            position = int(parts[1])
            rows: dict[str, tuple[list[int], list[FormField] | list[AddressRow]]] = {
                "phones": (form.phone_rows, form.phones),
                "emails": (form.email_rows, form.emails),
                "addresses": (form.address_rows, form.addresses),
            }
            row_indexes, entries = rows[parts[0]]
            if position < len(row_indexes):
                target = entries[row_indexes[position]].errors
        elif key in ("birthday", "id_number"):
            # The ID number on file speaks for the birthday: its refusal concerns the birthday field.
            target = form.birthday.errors
        elif key == "lunar_birthday":
            target = form.lunar_errors
        (target if target is not None else form.errors).extend(reasons)
    if not any(
        [
            form.errors,
            form.birthday.errors,
            form.lunar_errors,
            *(row.errors for row in form.phones),
            *(row.errors for row in form.emails),
            *(row.errors for row in form.addresses),
        ]
    ):
        form.errors.append(error.message)


def _lunar_options(language: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    chinese = language == "zh-hans"
    months = [(str(month), MONTH_NAMES[month - 1] if chinese else str(month)) for month in range(1, 13)]
    days = [
        (
            str(day),
            format_lunar(LunarDate(2000, 1, day)).removeprefix(MONTH_NAMES[0]) if chinese else str(day),
        )
        for day in range(1, 31)
    ]
    return months, days


def _form_context(opened: selfservice.OpenedLink, form: PublicForm, language: str) -> dict[str, Any]:
    months, days = _lunar_options(language)
    return {
        "form": form,
        "name": opened.details["name"],
        "expires_at": opened.link.expires_at,
        "lunar_months": months,
        "lunar_days": days,
        "needs_approval": settings.SELF_SERVICE_APPROVAL != selfservice.APPROVAL_AUTO,
    }


def _refused(request: HttpRequest, refusal: selfservice.LinkRefused, language: str) -> HttpResponse:
    return _public_render(
        request,
        "customers/selfservice/refused.html",
        {"message": refusal.message, "reason": refusal.reason},
        language=language,
        status=404 if refusal.reason == "invalid" else 410,
    )


def _limited(request: HttpRequest, language: str) -> HttpResponse:
    response = _public_render(
        request, "customers/selfservice/limited.html", {}, language=language, status=429
    )
    response["Retry-After"] = str(settings.SELF_SERVICE_RATE_WINDOW)
    return response


def _public(
    view: Callable[[HttpRequest, str, str], HttpResponse],
) -> Callable[[HttpRequest, str], HttpResponse]:
    """Rate limit, language and headers shared by the public views."""

    def wrapped(request: HttpRequest, token: str) -> HttpResponse:
        language = _language(request)
        with translation.override(language):
            if _is_rate_limited(request, token):
                return _limited(request, language)
            try:
                return view(request, token, language)
            except selfservice.LinkRefused as refusal:
                return _refused(request, refusal, language)

    wrapped.__name__ = view.__name__
    wrapped.__doc__ = view.__doc__
    return wrapped


# The token in the URL is the credential, so a forged cross-site post would need it already.
# CSRF checking cannot work here anyway: under Referrer-Policy no-referrer browsers send
# "Origin: null" with the form, which Django's check refuses.
@csrf_exempt
@never_cache
@require_http_methods(["GET", "POST"])
@_public
def public_page(request: HttpRequest, token: str, language: str) -> HttpResponse:
    """The customer's form: their details to correct, and the marketing consent."""
    opened = selfservice.link_open(token)
    if request.method == "GET":
        form = _form_from_record(opened.details)
        return _public_render(
            request,
            "customers/selfservice/form.html",
            _form_context(opened, form, language),
            language=language,
        )
    form = _form_from_post(request.POST)
    try:
        selfservice.submit(token, _data_of(form), form.consent, client_ip(request))
    except ValidationFailed as error:
        _place_errors(form, error)
        return _public_render(
            request,
            "customers/selfservice/form.html",
            _form_context(opened, form, language),
            language=language,
            status=422,
        )
    done = reverse("selfservice:done", args=[token])
    return redirect(f"{done}?{urlencode({'lang': language})}")


@never_cache
@require_http_methods(["GET"])
@_public
def public_done(request: HttpRequest, token: str, language: str) -> HttpResponse:
    """Thank-you page after a submission: says whether the changes wait for approval."""
    link = selfservice.link_for_token(token)
    submission: SelfServiceSubmission | None = getattr(link, "submission", None)
    if link.used_at is None or submission is None:
        raise selfservice.LinkRefused("invalid")
    context = {
        "is_pending": submission.status == SubmissionStatus.PENDING,
        "is_rejected": submission.status == SubmissionStatus.REJECTED,
        "had_changes": submission.payload not in ("", "{}"),
    }
    return _public_render(request, "customers/selfservice/thanks.html", context, language=language)


# --- staff ----------------------------------------------------------------------------------------
def _staff(request: HttpRequest) -> User:
    return require_permission(request, "customers.change")


@login_required
@require_POST
def link_create(request: HttpRequest, code: str) -> HttpResponse:
    """Create a link for the customer and show it once: URL, copy button and QR code."""
    actor = _staff(request)
    try:
        customer = customer_get(actor, code)
        link, token = selfservice.link_create(actor=actor, customer=customer)
    except NotFound as error:
        raise Http404 from error
    except PermissionDeniedError as error:
        raise PermissionDenied(error.message) from error
    url = request.build_absolute_uri(reverse("selfservice:public", args=[token]))
    context = {"customer": customer, "link": link, "url": url, "qr_svg": selfservice.qr_svg(url)}
    template = (
        "customers/selfservice/_link.html"
        if wants_partial(request)
        else "customers/selfservice/link_page.html"
    )
    response = render(request, template, context)
    response["Cache-Control"] = "no-store"
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
def review_queue(request: HttpRequest) -> HttpResponse:
    """Pending submissions of customers the user can see, before → after, oldest first."""
    viewer = _staff(request)
    try:
        page = keyset_page(
            selfservice.submissions_pending(viewer),
            ordering=("submitted_at", "id"),
            after=request.GET.get("after") or None,
            limit=QUEUE_PAGE_SIZE,
        )
    except DomainError as error:
        messages.error(request, error.message)
        return redirect("selfservice:review_queue")
    rows = [
        {"submission": submission, "changes": selfservice.submission_changes(viewer, submission)}
        for submission in page.items
    ]
    next_url = (
        f"{reverse('selfservice:review_queue')}?{urlencode({'after': page.next_cursor})}"
        if page.next_cursor
        else ""
    )
    return render(request, "customers/selfservice/review_queue.html", {"rows": rows, "next_url": next_url})


def _review(request: HttpRequest, submission_id: int, *, approve: bool) -> HttpResponse:
    actor = _staff(request)
    try:
        submission = selfservice.submission_get(actor, submission_id)
    except NotFound as error:
        raise Http404 from error
    code = submission.customer.code
    try:
        if approve:
            selfservice.submission_approve(actor=actor, submission=submission)
        else:
            selfservice.submission_reject(
                actor=actor, submission=submission, reason=request.POST.get("reason", "")
            )
    except NotFound as error:
        raise Http404 from error
    except PermissionDeniedError as error:
        raise PermissionDenied(error.message) from error
    except DomainError as error:
        messages.error(request, f"{code}: {error.message}")
    else:
        done = _("Changes of %(code)s applied.") if approve else _("Changes of %(code)s rejected.")
        messages.success(request, done % {"code": code})
    return redirect("selfservice:review_queue")


@login_required
@require_POST
def submission_approve(request: HttpRequest, submission_id: int) -> HttpResponse:
    return _review(request, submission_id, approve=True)


@login_required
@require_POST
def submission_reject(request: HttpRequest, submission_id: int) -> HttpResponse:
    return _review(request, submission_id, approve=False)
