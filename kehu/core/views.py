"""The audit log viewer: filters, keyset pages newest first, and a chain check.

Core knows no domain app, so the viewer is typed against the small ``PermissionHolder``
protocol instead of the accounts user model.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, cast

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from kehu.core.audit import audit_verify
from kehu.core.errors import DomainError
from kehu.core.models import AuditEvent
from kehu.core.pagination import keyset_page
from kehu.core.permissions import PermissionHolder
from kehu.core.selectors import AuditFilters, audit_event_list

AUDIT_ORDERING = ("-sequence", "-id")


class AuditFilterForm(forms.Form):
    # Core must not import the web package (it knows the accounts app), so Tabler's classes are set here.
    action = forms.CharField(
        label=_("Action"),
        max_length=64,
        required=False,
        help_text=_('An exact action, or a prefix ending in "." such as "user."'),
    )
    actor = forms.IntegerField(label=_("Actor ID"), min_value=1, required=False)
    object_type = forms.CharField(label=_("Object type"), max_length=64, required=False)
    object_id = forms.CharField(label=_("Object ID"), max_length=64, required=False)
    since = forms.DateField(label=_("From"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(label=_("To"), required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.widget.attrs["class"] = "form-control form-control-sm"

    def filters(self) -> AuditFilters:
        if not self.is_valid():
            return AuditFilters()
        data = self.cleaned_data
        since, until = data.get("since"), data.get("until")
        return AuditFilters(
            action=(data.get("action") or "").strip(),
            actor_id=data.get("actor"),
            object_type=(data.get("object_type") or "").strip(),
            object_id=(data.get("object_id") or "").strip(),
            since=_start_of(since) if since else None,
            # "To" includes the whole day chosen.
            until=_start_of(until + dt.timedelta(days=1)) if until else None,
        )


def _start_of(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


def _viewer(request: HttpRequest) -> PermissionHolder:
    user = request.user
    if not user.is_authenticated or not cast(PermissionHolder, user).has_perm("audit.view"):
        raise PermissionDenied
    return cast(PermissionHolder, user)


@dataclass(frozen=True)
class AuditRow:
    event: AuditEvent
    before: str
    after: str


def _pretty(data: Any) -> str:
    return "" if data is None else json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True)


@login_required
def audit_list(request: HttpRequest) -> HttpResponse:
    viewer = _viewer(request)
    form = AuditFilterForm(request.GET or None)
    queryset = audit_event_list(user=viewer, filters=form.filters())
    error = ""
    try:
        page = keyset_page(queryset, ordering=AUDIT_ORDERING, after=request.GET.get("after") or None)
    except DomainError as refused:
        error = refused.message
        page = keyset_page(queryset, ordering=AUDIT_ORDERING)
    next_url = ""
    if page.next_cursor:
        query = request.GET.copy()
        query["after"] = page.next_cursor
        next_url = f"{reverse('web:audit_list')}?{query.urlencode()}"
    rows = [
        AuditRow(event=event, before=_pretty(event.before), after=_pretty(event.after))
        for event in page.items
    ]
    context = {"form": form, "rows": rows, "next_url": next_url, "error": error}
    htmx = getattr(request, "htmx", None)
    # A history restore (Back after HTMX's cache was evicted) needs the whole page.
    partial = htmx is not None and bool(htmx) and not htmx.boosted and not htmx.history_restore_request
    response = render(request, "core/_audit_rows.html" if partial else "core/audit_list.html", context)
    # The same URL answers a fragment or a page: caches must keep them apart.
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_POST
def audit_verify_view(request: HttpRequest) -> HttpResponse:
    # POST: walking the whole chain is expensive, so crawlers and prefetchers must not trigger it.
    _viewer(request)
    result = audit_verify()
    htmx = getattr(request, "htmx", None)
    template = "core/_audit_verify.html" if htmx else "core/audit_verify.html"
    return render(request, template, {"result": result})
