"""The 360 page: profile, reveal, timeline, delete."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from kehu.accounts.models import Department, User
from kehu.core.errors import DomainError, NotFound, ValidationFailed
from kehu.customers import selectors, services
from kehu.customers.models import Customer, CustomFieldDefinition, EventKind
from kehu.customers.validation import field_labels
from kehu.customers.views._common import (
    TIMELINE_PAGE_SIZE,
    _choice_labels,
    _customer_or_404,
    _plain,
    _refuse_if_forbidden,
)
from kehu.web.shortcuts import require_permission


@login_required
@require_GET
def customer_detail(request: HttpRequest, code: str) -> HttpResponse:
    viewer = require_permission(request, "customers.view")
    customer = _customer_or_404(viewer, code)
    # Pages mask for everyone: a full value is shown only through the reveal button, so that
    # every look at one is on the timeline and in the audit log.
    shown = selectors.present_customer(viewer, customer, reveal=False)
    definitions = {
        definition.key: definition for definition in selectors.custom_field_definitions(include_inactive=True)
    }
    labels = _choice_labels()
    custom_fields = [
        {
            "label": definitions[key].label if key in definitions else key,
            "value": _custom_value(definitions.get(key), value),
        }
        for key, value in sorted(
            customer.custom_fields.items(),
            key=lambda item: (definitions[item[0]].position if item[0] in definitions else 9999, item[0]),
        )
    ]
    context = {
        "customer": customer,
        "shown": shown,
        "gender": labels["gender"].get(customer.gender, ""),
        "source": labels["source"].get(customer.source, customer.source),
        "status": labels["status"].get(customer.status, customer.status),
        "custom_fields": custom_fields,
        "may_reveal": selectors.can_view_sensitive(viewer),
        "may_edit": viewer.has_perm("customers.change"),
        "may_delete": viewer.has_perm("customers.delete"),
        **_timeline_context(viewer, customer, after=None),
    }
    return render(request, "customers/detail.html", context)


def _custom_value(definition: CustomFieldDefinition | None, value: Any) -> str:
    if definition is not None and definition.choices:
        names = {choice["value"]: choice.get("label") or choice["value"] for choice in definition.choices}
        if isinstance(value, list):
            return ", ".join(str(names.get(item, item)) for item in value)
        return str(names.get(value, value))
    return _plain(value)


REVEAL_FIELDS = {
    "phone": gettext_lazy("Phone"),
    "email": gettext_lazy("Email"),
    "id_number": gettext_lazy("ID number"),
    "street": gettext_lazy("Street"),
}


def _change_label(field: str, definitions: dict[str, CustomFieldDefinition]) -> str:
    if field.startswith("custom_fields."):
        key = field.split(".", 1)[1]
        return definitions[key].label if key in definitions else key
    labels = field_labels()
    return str(labels.get(field.removesuffix("_id"), field))


def _timeline_context(viewer: User, customer: Customer, *, after: str | None) -> dict[str, Any]:
    page = selectors.customer_timeline(viewer, customer, after=after, limit=TIMELINE_PAGE_SIZE)
    events = [selectors.present_event(viewer, event, reveal=False) for event in page.items]
    definitions = {d.key: d for d in selectors.custom_field_definitions(include_inactive=True)}
    # Owner and department changes hold ids: name them with one query each, not one per row.
    user_ids: set[int] = set()
    department_ids: set[int] = set()
    for event in events:
        for change in event["changes"]:
            target = (
                user_ids
                if change["field"] == "owner_id"
                else department_ids
                if change["field"] == "department_id"
                else None
            )
            if target is not None:
                target.update(
                    value for value in (change["before"], change["after"]) if isinstance(value, int)
                )
    users = {user.pk: str(user) for user in User.objects.filter(pk__in=user_ids)}
    departments = {
        department.pk: department.name for department in Department.objects.filter(pk__in=department_ids)
    }
    kinds = dict(EventKind.choices)
    tier_names = _tier_names(events)
    items = []
    for event in events:
        changes = []
        for change in event["changes"]:
            names = (
                users
                if change["field"] == "owner_id"
                else departments
                if change["field"] == "department_id"
                else None
            )
            before, after_value = change["before"], change["after"]
            if names is not None:
                before, after_value = names.get(before, before), names.get(after_value, after_value)
            changes.append(
                {
                    "field": change["field"],
                    "label": _change_label(change["field"], definitions),
                    "before": _plain(before),
                    "after": _plain(after_value),
                }
            )
        data = event["data"] or {}
        items.append(
            {
                "id": event["id"],
                "kind": event["kind"],
                "kind_label": kinds.get(event["kind"], event["kind"]),
                "at": event["at"],
                "actor": event["actor"],
                "channel": event["channel"],
                "changes": changes,
                "revealed": REVEAL_FIELDS.get(str(data.get("field", "")))
                if event["kind"] == EventKind.REVEALED
                else None,
                "details": _event_details(event["kind"], data, tier_names),
            }
        )
    more_url = ""
    if page.next_cursor:
        more_url = (
            f"{reverse('customers:timeline', args=[customer.code])}?{urlencode({'after': page.next_cursor})}"
        )
    return {"timeline": items, "timeline_more_url": more_url, "customer": customer}


# Keys that card, ledger, order and tier events carry in ``data``, in display order, with how
# each is shown: money (decimal yuan strings), a tier code (shown by name), or as written.
_MONEY, _TIER, _PLAIN = "money", "tier", "plain"


def _detail_fields() -> list[tuple[str, str, str]]:
    return [
        ("card", pgettext("timeline detail", "Card"), _PLAIN),
        ("new_card", pgettext("timeline detail", "New card"), _PLAIN),
        ("card_type", pgettext("timeline detail", "Card type"), _PLAIN),
        ("from_type", pgettext("timeline detail", "From card type"), _PLAIN),
        ("to_type", pgettext("timeline detail", "To card type"), _PLAIN),
        ("order", pgettext("timeline detail", "Order"), _PLAIN),
        ("refund", pgettext("timeline detail", "Refund"), _PLAIN),
        ("subject", pgettext("timeline detail", "Subject"), _PLAIN),
        ("into", pgettext("timeline detail", "Merged into"), _PLAIN),
        ("merged", pgettext("timeline detail", "Customers merged in"), _PLAIN),
        ("restored", pgettext("timeline detail", "Customers restored"), _PLAIN),
        ("total", pgettext("timeline detail", "Total"), _MONEY),
        ("amount", pgettext("timeline detail", "Amount"), _MONEY),
        ("paid", pgettext("timeline detail", "Paid"), _MONEY),
        ("bonus", pgettext("timeline detail", "Bonus"), _MONEY),
        ("fee", pgettext("timeline detail", "Fee"), _MONEY),
        ("returned", pgettext("timeline detail", "Given back"), _MONEY),
        ("forfeited", pgettext("timeline detail", "Forfeited"), _MONEY),
        ("stored_value", pgettext("timeline detail", "Stored value"), _MONEY),
        ("balance", pgettext("timeline detail", "Balance"), _MONEY),
        ("points", pgettext("timeline detail", "Points"), _PLAIN),
        ("points_earned", pgettext("timeline detail", "Points earned"), _PLAIN),
        ("points_reversed", pgettext("timeline detail", "Points reversed"), _PLAIN),
        ("points_shortfall", pgettext("timeline detail", "Spent points kept back"), _PLAIN),
        ("visits", pgettext("timeline detail", "Visits"), _PLAIN),
        ("frozen_days", pgettext("timeline detail", "Days frozen"), _PLAIN),
        ("from", pgettext("timeline detail", "From tier"), _TIER),
        ("to", pgettext("timeline detail", "To tier"), _TIER),
        ("coupon", pgettext("timeline detail", "Coupon"), _PLAIN),
        ("template", pgettext("timeline detail", "Coupon type"), _PLAIN),
        ("valid_until", pgettext("timeline detail", "Valid until"), _PLAIN),
        ("expires_on", pgettext("timeline detail", "Valid until"), _PLAIN),
        ("reason", pgettext("timeline detail", "Reason"), _PLAIN),
    ]


def _event_details(kind: str, data: dict[str, Any], tier_names: dict[str, str]) -> list[dict[str, str]]:
    """What card, order and loyalty events carry, as label/value pairs in a fixed order."""
    # A ledger event's amount and balance are points or visits unless its ledger is stored value.
    ledger = data.get("ledger")
    counts_not_money = ledger is not None and ledger != "stored_value"
    details = []
    for key, label, shown_as in _detail_fields():
        value = data.get(key)
        if value is None or value == "":
            continue
        if key == "refund" and kind == EventKind.CARD_CANCELLED:
            shown_as, label = _MONEY, pgettext("timeline detail", "Refunded")
        if key == "from" and kind == EventKind.UNMERGED:
            shown_as, label = _PLAIN, pgettext("timeline detail", "Separated from")
        if shown_as == _MONEY and not (counts_not_money and key in {"amount", "balance"}):
            text = f"¥{value}"
        elif isinstance(value, list):
            text = ", ".join(str(item) for item in value)
        elif shown_as == _TIER:
            text = tier_names.get(str(value), str(value))
        else:
            text = str(value)
        details.append({"key": key, "label": label, "value": text})
    return details


def _tier_names(events: list[dict[str, Any]]) -> dict[str, str]:
    codes = {
        str(event["data"][key])
        for event in events
        if event["kind"] == EventKind.TIER_CHANGED
        for key in ("from", "to")
        if (event["data"] or {}).get(key)
    }
    if not codes:
        return {}
    from kehu.loyalty.models import Tier

    return dict(Tier.objects.filter(code__in=codes).values_list("code", "name"))


@login_required
@require_GET
def customer_timeline(request: HttpRequest, code: str) -> HttpResponse:
    viewer = require_permission(request, "customers.view")
    customer = _customer_or_404(viewer, code)
    try:
        context = _timeline_context(viewer, customer, after=request.GET.get("after") or None)
    except ValidationFailed as error:
        raise Http404 from error
    template = "customers/_timeline_items.html" if request.GET.get("after") else "customers/_timeline.html"
    return render(request, template, context)


@login_required
@require_POST
def customer_reveal(request: HttpRequest, code: str) -> HttpResponse:
    """The full value of one masked field, swapped in place; the timeline then shows the reveal."""
    viewer = require_permission(request, "customers.view_sensitive")
    customer = _customer_or_404(viewer, code)
    field = request.POST.get("field", "")
    item = request.POST.get("item_id", "")
    try:
        value = services.customer_reveal(
            actor=viewer, customer=customer, field=field, item_id=int(item) if item.isdigit() else None
        )
    except NotFound as error:
        raise Http404 from error
    except DomainError as error:
        _refuse_if_forbidden(error)
        return HttpResponse(error.message, status=error.status)
    response = render(request, "customers/_revealed.html", {"value": value, "field": field})
    response["HX-Trigger"] = json.dumps({"customer-timeline-changed": {"code": customer.code}})
    return response


@login_required
@require_http_methods(["GET", "POST"])
def customer_delete(request: HttpRequest, code: str) -> HttpResponse:
    viewer = require_permission(request, "customers.delete")
    customer = _customer_or_404(viewer, code)
    if request.method == "POST":
        try:
            services.customer_delete(actor=viewer, customer=customer)
        except DomainError as error:
            _refuse_if_forbidden(error)
            messages.error(request, error.message)
            return redirect("customers:detail", code=customer.code)
        messages.success(request, _("Customer %(code)s was deleted.") % {"code": customer.code})
        return redirect("customers:list")
    return render(request, "customers/confirm_delete.html", {"customer": customer})
