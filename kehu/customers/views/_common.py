"""What the customer pages share: lookups, labels, value formatting."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from kehu.accounts.models import User
from kehu.core.errors import DomainError, NotFound, PermissionDeniedError
from kehu.customers import selectors
from kehu.customers.models import Customer, Gender, Source, Status

LIST_PAGE_SIZE = 50


SEARCH_LIMIT = 20


TIMELINE_PAGE_SIZE = 20


MATCH_LABELS = {
    "code": gettext_lazy("code"),
    "name": gettext_lazy("name"),
    "pinyin": gettext_lazy("pinyin"),
    "initials": gettext_lazy("initials"),
    "phone": gettext_lazy("phone"),
    "last4": gettext_lazy("last 4 digits"),
    "email": gettext_lazy("email"),
    "id_number": gettext_lazy("ID number"),
}


def _customer_or_404(viewer: User, code: str) -> Customer:
    try:
        return selectors.customer_get(viewer, code)
    except NotFound as error:
        raise Http404 from error


def _refuse_if_forbidden(error: DomainError) -> None:
    if isinstance(error, PermissionDeniedError) and not error.fields:
        raise PermissionDenied(error.message) from error


def _is_htmx(request: HttpRequest) -> bool:
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.boosted and not htmx.history_restore_request  # type: ignore[union-attr]


def _choice_labels() -> dict[str, dict[str, str]]:
    return {
        "gender": {str(value): str(label) for value, label in Gender.choices},
        "source": {str(value): str(label) for value, label in Source.choices},
        "status": {str(value): str(label) for value, label in Status.choices},
    }


def _plain(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if value is True:
        return str(_("Yes"))
    if value is False:
        return str(_("No"))
    if isinstance(value, list):
        return ", ".join(_plain(item) for item in value) or "—"
    if isinstance(value, dict) and "month" in value:
        leap = _("leap ") if value.get("is_leap_month") else ""
        return _("%(leap)smonth %(month)s, day %(day)s") % {
            "leap": leap,
            "month": value["month"],
            "day": value["day"],
        }
    return str(value)
