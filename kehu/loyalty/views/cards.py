"""Card pages: issue in one screen, the card page with its actions and ledger, the card list."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from kehu.accounts.models import User
from kehu.core.errors import DomainError, NotFound, ValidationFailed
from kehu.core.money import fen_to_str
from kehu.customers import selectors as customer_selectors
from kehu.customers.models import Customer
from kehu.customers.search import customer_search
from kehu.loyalty import selectors
from kehu.loyalty.forms import (
    AdjustForm,
    CancelForm,
    CardFilterForm,
    CardIssueForm,
    OptionalReasonForm,
    ReasonForm,
    RenewForm,
    ReplaceForm,
    SpendForm,
    TopUpForm,
    TransferForm,
    UpgradeForm,
)
from kehu.loyalty.models import Card, CardKind, CardStatus, CardType
from kehu.loyalty.services import cards as card_services
from kehu.loyalty.views._common import PAGE_SIZE, card_or_404, is_htmx, new_key, refuse_if_forbidden
from kehu.web.shortcuts import add_domain_error, require_permission

_CUSTOMER_CODE = re.compile(r"^[Cc]\d+$")

# Service argument names -> the form field that shows their errors.
_ISSUE_FIELDS = {
    "customer": "customer",
    "customer_code": "customer",
    "customer_phone": "customer",
    "phone": "customer",
    "customer_name": "name",
    "name": "name",
    "number": "number",
    "card_type": "card_type",
    "paid_fen": "amount",
    "amount": "amount",
    "payment_method": "payment_method",
    "payment_reference": "payment_reference",
}


# --- issue -------------------------------------------------------------------------------------
def _issue_context(form: CardIssueForm, card_types: list[CardType], **extra: Any) -> dict[str, Any]:
    return {
        "form": form,
        "prices": {str(card_type.pk): fen_to_str(card_type.price_fen) for card_type in card_types},
        **extra,
    }


@login_required
@require_http_methods(["GET", "POST"])
def card_issue(request: HttpRequest) -> HttpResponse:
    viewer = require_permission(request, "cards.create")
    card_types = list(selectors.card_types(active_only=True))
    if request.method != "POST":
        first = card_types[0] if card_types else None
        initial = {
            "key": new_key(),
            "payment_method": "cash",
            "card_type": first.pk if first else None,
            "amount": fen_to_str(first.price_fen) if first else "",
            "customer": request.GET.get("customer", ""),
        }
        form = CardIssueForm(initial=initial, card_types=card_types)
        return render(request, "loyalty/issue.html", _issue_context(form, card_types))
    form = CardIssueForm(request.POST, card_types=card_types)
    status = 422
    if form.is_valid():
        data = form.cleaned_data
        who = data["customer"].strip()
        by_code = bool(_CUSTOMER_CODE.match(who))
        try:
            result = card_services.card_issue(
                actor=viewer,
                card_type=data["card_type"],
                customer_code=who.upper() if by_code else None,
                customer_phone=None if by_code else who,
                customer_name=data["name"] or None,
                number=data["number"].strip() or None,
                payment_method=data["payment_method"],
                paid_fen=data["amount"],
                payment_reference=data["payment_reference"],
                key=data["key"] or None,
            )
        except DomainError as error:
            refuse_if_forbidden(error)
            add_domain_error(form, error, field_map=_ISSUE_FIELDS)
            status = error.status
        else:
            card = result.card
            if result.customer_created:
                messages.success(
                    request,
                    _("Card %(number)s was issued to the new customer %(code)s.")
                    % {"number": card.number, "code": result.customer.code},
                )
            else:
                messages.success(
                    request,
                    _("Card %(number)s was issued to %(code)s.")
                    % {"number": card.number, "code": result.customer.code},
                )
            return redirect("loyalty:card_detail", number=card.number)
    return render(request, "loyalty/issue.html", _issue_context(form, card_types), status=status)


def lookup_customer(viewer: User, text: str) -> Customer | None:
    text = text.strip()
    if not text:
        return None
    if _CUSTOMER_CODE.match(text):
        try:
            return customer_selectors.customer_get(viewer, text)
        except NotFound:
            return None
    try:
        hits = customer_search(viewer, text, limit=2)
    except DomainError:
        return None
    # Only an exact identification counts here: a phone or a code, never a name guess.
    exact = [hit for hit in hits if hit.matched in {"phone", "code"}]
    return exact[0].customer if len(exact) == 1 else None


@login_required
@require_GET
def customer_lookup(request: HttpRequest) -> HttpResponse:
    """Who the typed code or phone belongs to, masked: shown beside the issue form's first box."""
    viewer = require_permission(request, "cards.create")
    text = request.GET.get("customer", "")[:64]
    customer = lookup_customer(viewer, text)
    context: dict[str, Any] = {"query": text.strip(), "customer": customer}
    if customer is not None:
        shown = customer_selectors.present_customer(viewer, customer, full=False, reveal=False)
        context["phone"] = (shown["primary_phone"] or {}).get("number", "")
        context["cards"] = list(selectors.card_list(viewer, customer=customer, limit=5).items)
    return render(request, "loyalty/_customer_lookup.html", context)


@login_required
@require_GET
def card_type_price(request: HttpRequest) -> HttpResponse:
    """The amount box prefilled with the chosen card type's price (swapped in on change)."""
    require_permission(request, "cards.create")
    card_types = list(selectors.card_types(active_only=True))
    form = CardIssueForm(card_types=card_types)
    chosen = next(
        (card_type for card_type in card_types if str(card_type.pk) == request.GET.get("card_type")), None
    )
    if chosen is not None:
        form.initial["amount"] = fen_to_str(chosen.price_fen)
    return render(request, "loyalty/_amount_field.html", {"field": form["amount"]})


# --- the card page -----------------------------------------------------------------------------
ActionRunner = Callable[[User, Card, dict[str, Any]], Any]


def _run_top_up(viewer: User, card: Card, data: dict[str, Any]) -> Any:
    return card_services.card_top_up(
        actor=viewer,
        card=card,
        paid_fen=data["amount"],
        payment_method=data["payment_method"],
        payment_reference=data["payment_reference"],
        key=data["key"] or None,
    )


def _run_spend(viewer: User, card: Card, data: dict[str, Any]) -> Any:
    return card_services.card_spend(
        actor=viewer,
        card=card,
        kind=data["kind"],
        amount=data["amount_value"],
        reference=data["reference"],
        note=data["note"],
        key=data["key"] or None,
    )


def _run_transfer(viewer: User, card: Card, data: dict[str, Any]) -> Any:
    try:
        to_card = selectors.card_get(viewer, data["to_card"])
    except NotFound:
        raise ValidationFailed.for_field("to_card", _("No card you can see has this number.")) from None
    return card_services.points_transfer(
        actor=viewer,
        from_card=card,
        to_card=to_card,
        points=data["points"],
        note=data["note"],
        key=data["key"] or None,
    )


def _run_upgrade(viewer: User, card: Card, data: dict[str, Any]) -> Any:
    return card_services.card_upgrade(
        actor=viewer,
        card=card,
        card_type=data["card_type"],
        paid_fen=data["amount"] or 0,
        payment_method=data["payment_method"],
        payment_reference=data["payment_reference"],
    )


def _run_adjust(viewer: User, card: Card, data: dict[str, Any]) -> Any:
    return card_services.ledger_adjust(
        actor=viewer,
        card=card,
        kind=data["kind"],
        amount=data["amount_value"],
        reason_text=data["reason_text"],
        key=data["key"] or None,
    )


def _run_freeze(viewer: User, card: Card, data: dict[str, Any]) -> Any:
    return card_services.card_freeze(actor=viewer, card=card, reason=data["reason"])


def _run_unfreeze(viewer: User, card: Card, data: dict[str, Any]) -> Any:
    return card_services.card_unfreeze(actor=viewer, card=card)


def _run_report_lost(viewer: User, card: Card, data: dict[str, Any]) -> Any:
    return card_services.card_report_lost(actor=viewer, card=card, reason=data["reason"])


def _run_replace(viewer: User, card: Card, data: dict[str, Any]) -> Any:
    return card_services.card_replace(
        actor=viewer,
        card=card,
        new_number=data["new_number"].strip() or None,
        fee_fen=data["fee"] or 0,
        payment_method=data["payment_method"],
        key=data["key"] or None,
    )


def _run_renew(viewer: User, card: Card, data: dict[str, Any]) -> Any:
    return card_services.card_renew(
        actor=viewer,
        card=card,
        paid_fen=data["amount"],
        payment_method=data["payment_method"],
        payment_reference=data["payment_reference"],
        key=data["key"] or None,
    )


def _run_cancel(viewer: User, card: Card, data: dict[str, Any]) -> Any:
    return card_services.card_cancel(
        actor=viewer,
        card=card,
        reason=data["reason"],
        refund_method=data["refund_method"],
        key=data["key"] or None,
    )


class _NoFields(forms.Form):
    pass


# action -> (form class, permission, runner, success message, statuses it is offered in)
@dataclass(frozen=True)
class Action:
    form_class: type[forms.Form]
    permission: str
    run: ActionRunner
    # The card statuses the action is offered in (the service has the last word).
    statuses: tuple[str, ...]


ACTIONS: dict[str, Action] = {
    "top_up": Action(TopUpForm, "cards.change", _run_top_up, (CardStatus.ACTIVE,)),
    "spend": Action(SpendForm, "cards.change", _run_spend, (CardStatus.ACTIVE,)),
    "transfer": Action(TransferForm, "cards.change", _run_transfer, (CardStatus.ACTIVE,)),
    "adjust": Action(AdjustForm, "ledger.change", _run_adjust, (CardStatus.ACTIVE,)),
    "freeze": Action(ReasonForm, "cards.change", _run_freeze, (CardStatus.ACTIVE,)),
    "unfreeze": Action(_NoFields, "cards.change", _run_unfreeze, (CardStatus.FROZEN,)),
    "report_lost": Action(
        OptionalReasonForm, "cards.change", _run_report_lost, (CardStatus.ACTIVE, CardStatus.FROZEN)
    ),
    "replace": Action(ReplaceForm, "cards.change", _run_replace, (CardStatus.LOST, CardStatus.ACTIVE)),
    "renew": Action(RenewForm, "cards.change", _run_renew, (CardStatus.ACTIVE, CardStatus.EXPIRED)),
    "upgrade": Action(UpgradeForm, "cards.change", _run_upgrade, (CardStatus.ACTIVE,)),
    "cancel": Action(
        CancelForm,
        "cards.delete",
        _run_cancel,
        (CardStatus.ACTIVE, CardStatus.FROZEN, CardStatus.LOST, CardStatus.EXPIRED),
    ),
}


def _action_titles() -> dict[str, str]:
    return {
        "top_up": _("Top up"),
        "spend": _("Use"),
        "transfer": _("Transfer points"),
        "upgrade": _("Upgrade"),
        "adjust": _("Adjust"),
        "freeze": _("Freeze"),
        "unfreeze": _("Unfreeze"),
        "report_lost": _("Report lost"),
        "replace": _("Replace"),
        "renew": _("Renew"),
        "cancel": _("Cancel card"),
    }


def _success_messages() -> dict[str, str]:
    # Listed literally so that makemessages finds each one.
    return {
        "top_up": _("Top-up recorded."),
        "spend": _("Use recorded."),
        "transfer": _("The points were transferred."),
        "upgrade": _("The card type was changed."),
        "adjust": _("Adjustment recorded."),
        "freeze": _("The card is frozen."),
        "unfreeze": _("The card is active again."),
        "report_lost": _("The card is reported lost and blocked."),
        "replace": _("The replacement card was issued."),
        "renew": _("The card was renewed."),
        "cancel": _("The card was cancelled."),
    }


def _offered(viewer: User, card: Card, action: str) -> bool:
    spec = ACTIONS[action]
    if not viewer.has_perm(spec.permission) or card.status not in spec.statuses:
        return False
    if action == "top_up":
        return card.card_type.kind == CardKind.STORED_VALUE
    if action == "renew":
        return card.card_type.validity_days is not None or card.card_type.kind == CardKind.VISITS
    return True


def _action_initial(action: str, card: Card) -> dict[str, Any]:
    initial: dict[str, Any] = {"key": new_key(), "payment_method": "cash", "refund_method": "cash"}
    if action == "spend":
        initial["kind"] = {
            CardKind.VISITS: "visits",
            CardKind.POINTS: "points",
        }.get(CardKind(card.card_type.kind), "stored_value")
        if initial["kind"] == "visits":
            initial["amount"] = "1"
    if action == "renew":
        initial["amount"] = fen_to_str(card.card_type.price_fen)
    return initial


def _card_context(viewer: User, card: Card, *, bound: tuple[str, forms.Form] | None = None) -> dict[str, Any]:
    titles = _action_titles()
    actions = []
    for action, spec in ACTIONS.items():
        if bound is not None and bound[0] == action:
            form = bound[1]
        elif _offered(viewer, card, action):
            form = spec.form_class(initial=_action_initial(action, card), auto_id=f"{action}-%s")
        else:
            continue
        actions.append(
            {
                "name": action,
                "title": titles[action],
                "form": form,
                "is_open": bound is not None and bound[0] == action,
            }
        )
    ledger = selectors.card_ledger(viewer, card, limit=PAGE_SIZE)
    return {
        "card": card,
        "qr_svg": selectors.card_qr_svg(card.number),
        "actions": actions,
        "entries": ledger.items,
        "ledger_more_url": _ledger_more_url(card, ledger.next_cursor),
        "replaces": Card.objects.filter(replaced_by=card).values_list("number", flat=True).first(),
    }


def _ledger_more_url(card: Card, cursor: str | None) -> str:
    if not cursor:
        return ""
    return f"{reverse('loyalty:card_ledger', args=[card.number])}?{urlencode({'after': cursor})}"


@login_required
@require_GET
def card_detail(request: HttpRequest, number: str) -> HttpResponse:
    viewer = require_permission(request, "cards.view")
    card = card_or_404(viewer, number)
    return render(request, "loyalty/card_detail.html", _card_context(viewer, card))


@login_required
@require_GET
def card_ledger(request: HttpRequest, number: str) -> HttpResponse:
    """The next page of ledger rows (keyset on id), appended under the table by "Load more"."""
    viewer = require_permission(request, "cards.view")
    card = card_or_404(viewer, number)
    try:
        page = selectors.card_ledger(viewer, card, after=request.GET.get("after") or None, limit=PAGE_SIZE)
    except ValidationFailed as error:
        raise Http404 from error
    context = {
        "card": card,
        "entries": page.items,
        "ledger_more_url": _ledger_more_url(card, page.next_cursor),
    }
    return render(request, "loyalty/_ledger_rows.html", context)


@login_required
@require_POST
def card_action(request: HttpRequest, number: str, action: str) -> HttpResponse:
    """One lifecycle or ledger action from the card page; refusals come back beside the field."""
    if action not in ACTIONS:
        raise Http404
    spec = ACTIONS[action]
    require_permission(request, "cards.view")
    viewer = require_permission(request, spec.permission)
    card = card_or_404(viewer, number)
    form = spec.form_class(request.POST, auto_id=f"{action}-%s")
    status = 422
    if form.is_valid():
        try:
            outcome = spec.run(viewer, card, form.cleaned_data)
        except DomainError as error:
            refuse_if_forbidden(error)
            # Service argument names -> this form's fields, where the form has such a field.
            aliases = {"paid_fen": "amount", "fee_fen": "fee", "points": "amount", "reason": "reason_text"}
            add_domain_error(
                form,
                error,
                field_map={name: alias for name, alias in aliases.items() if alias in form.fields},
            )
            status = error.status
        else:
            messages.success(request, _success_messages()[action])
            target = card.number
            if action == "replace":
                new_card = outcome if isinstance(outcome, Card) else getattr(outcome, "card", None)
                if isinstance(new_card, Card):
                    target = new_card.number
            return redirect("loyalty:card_detail", number=target)
    fresh = card_or_404(viewer, number)
    return render(
        request, "loyalty/card_detail.html", _card_context(viewer, fresh, bound=(action, form)), status=status
    )


# --- the card list -----------------------------------------------------------------------------
def _customer_for_search(viewer: User, text: str) -> Customer | None:
    return lookup_customer(viewer, text)


@login_required
@require_GET
def card_list(request: HttpRequest) -> HttpResponse:
    viewer = require_permission(request, "cards.view")
    form = CardFilterForm(request.GET or None)
    query, status = "", ""
    if form.is_valid():
        query, status = form.cleaned_data["q"].strip(), form.cleaned_data["status"]
    customer: Customer | None = None
    nothing_found = False
    if query:
        # A scanned card number opens the card; a customer code or phone lists their cards.
        try:
            card = selectors.card_get(viewer, query)
        except NotFound:
            card = None
        if card is not None and not request.GET.get("after"):
            return redirect("loyalty:card_detail", number=card.number)
        customer = _customer_for_search(viewer, query)
        nothing_found = customer is None
    items: list[Card] = []
    next_url = ""
    if not nothing_found:
        try:
            page = selectors.card_list(
                viewer,
                customer=customer,
                status=status or None,
                after=request.GET.get("after") or None,
                limit=PAGE_SIZE,
            )
        except ValidationFailed as error:
            raise Http404 from error
        items = list(page.items)
        if page.next_cursor:
            query_dict = request.GET.copy()
            query_dict["after"] = page.next_cursor
            next_url = f"{reverse('loyalty:card_list')}?{query_dict.urlencode()}"
    context = {
        "form": form if form.is_bound else CardFilterForm(),
        "cards": items,
        "next_url": next_url,
        "customer": customer,
        "nothing_found": nothing_found,
        "is_appending": bool(request.GET.get("after")),
    }
    template = (
        "loyalty/_card_rows.html"
        if is_htmx(request) and request.GET.get("after")
        else "loyalty/card_list.html"
    )
    return render(request, template, context)


@login_required
@require_GET
def customer_cards(request: HttpRequest, code: str) -> HttpResponse:
    """The 360 page's "Cards" panel, loaded as an HTMX fragment."""
    viewer = require_permission(request, "cards.view")
    try:
        customer = customer_selectors.customer_get(viewer, code)
    except NotFound as error:
        raise Http404 from error
    page = selectors.card_list(viewer, customer=customer, limit=20)
    context = {
        "customer": customer,
        "cards": page.items,
        "has_more": page.next_cursor is not None,
        "may_issue": viewer.has_perm("cards.create"),
    }
    return render(request, "loyalty/_customer_cards.html", context)
