"""The programme's admin pages: card types (with bonus rules and tier discounts), tiers, liabilities."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from kehu.accounts.models import User
from kehu.core.errors import DomainError
from kehu.core.money import fen_to_str, format_fen
from kehu.loyalty import selectors
from kehu.loyalty.forms import (
    BonusRuleForm,
    CardTypeForm,
    TierDiscountForm,
    TierForm,
    card_type_initial,
    tier_initial,
)
from kehu.loyalty.models import CardKind, CardType, CardTypeTierDiscount, Tier, TopUpBonusRule
from kehu.loyalty.services import ledger, programme
from kehu.loyalty.views._common import refuse_if_forbidden
from kehu.web.shortcuts import add_domain_error, require_permission


@login_required
@require_GET
def card_type_list(request: HttpRequest) -> HttpResponse:
    viewer = require_permission(request, "card_types.view")
    context = {
        "card_types": list(selectors.card_types(active_only=False)),
        "tiers": list(selectors.tiers()),
        "may_create": viewer.has_perm("card_types.create"),
        "may_change": viewer.has_perm("card_types.change"),
    }
    return render(request, "loyalty/card_type_list.html", context)


def _card_type_or_404(pk: int) -> CardType:
    card_type = CardType.objects.select_related("initial_tier").filter(pk=pk).first()
    if card_type is None:
        raise Http404
    return card_type


def _card_type_page(
    request: HttpRequest,
    card_type: CardType | None,
    form: CardTypeForm,
    *,
    status: int = 200,
    bonus_form: BonusRuleForm | None = None,
    discount_form: TierDiscountForm | None = None,
) -> HttpResponse:
    context: dict[str, Any] = {"form": form, "card_type": card_type}
    if card_type is not None:
        context.update(
            {
                "bonus_rules": list(
                    TopUpBonusRule.objects.filter(card_type=card_type).order_by("-min_payment_fen")
                ),
                "bonus_form": bonus_form or BonusRuleForm(),
                "discounts": list(
                    CardTypeTierDiscount.objects.filter(card_type=card_type)
                    .select_related("tier")
                    .order_by("tier__rank")
                ),
                "discount_form": discount_form or TierDiscountForm(),
                "is_stored_value": card_type.kind == CardKind.STORED_VALUE,
            }
        )
    return render(request, "loyalty/card_type_form.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def card_type_create(request: HttpRequest) -> HttpResponse:
    viewer = require_permission(request, "card_types.create")
    if request.method != "POST":
        return _card_type_page(request, None, CardTypeForm(initial={"points_per_yuan": 1, "is_active": True}))
    form = CardTypeForm(request.POST)
    status = 422
    if form.is_valid():
        try:
            card_type = programme.card_type_create(actor=viewer, data=form.service_data())
        except DomainError as error:
            refuse_if_forbidden(error)
            add_domain_error(form, error, field_map=CardTypeForm.FIELD_MAP)
            status = error.status
        else:
            messages.success(request, _("Card type %(name)s was created.") % {"name": card_type.name})
            return redirect("loyalty:card_type_edit", pk=card_type.pk)
    return _card_type_page(request, None, form, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def card_type_edit(request: HttpRequest, pk: int) -> HttpResponse:
    viewer = require_permission(request, "card_types.view")
    card_type = _card_type_or_404(pk)
    if request.method != "POST":
        return _card_type_page(request, card_type, CardTypeForm(initial=card_type_initial(card_type)))
    viewer = require_permission(request, "card_types.change")
    form = CardTypeForm(request.POST)
    status = 422
    if form.is_valid():
        try:
            programme.card_type_update(actor=viewer, card_type=card_type, data=form.service_data())
        except DomainError as error:
            refuse_if_forbidden(error)
            add_domain_error(form, error, field_map=CardTypeForm.FIELD_MAP)
            status = error.status
        else:
            messages.success(request, _("Changes to %(name)s were saved.") % {"name": card_type.name})
            return redirect("loyalty:card_type_edit", pk=card_type.pk)
    return _card_type_page(request, card_type, form, status=status)


@login_required
@require_POST
def bonus_rule_add(request: HttpRequest, pk: int) -> HttpResponse:
    viewer = require_permission(request, "card_types.change")
    card_type = _card_type_or_404(pk)
    form = BonusRuleForm(request.POST)
    status = 422
    if form.is_valid():
        try:
            programme.bonus_rule_create(
                actor=viewer,
                card_type=card_type,
                min_payment_fen=form.cleaned_data["min_payment"],
                bonus_fen=form.cleaned_data["bonus"],
            )
        except DomainError as error:
            refuse_if_forbidden(error)
            add_domain_error(form, error, field_map=BonusRuleForm.FIELD_MAP)
            status = error.status
        else:
            messages.success(request, _("The bonus rule was added."))
            return redirect("loyalty:card_type_edit", pk=card_type.pk)
    return _card_type_page(
        request, card_type, CardTypeForm(initial=card_type_initial(card_type)), status=status, bonus_form=form
    )


@login_required
@require_POST
def bonus_rule_remove(request: HttpRequest, pk: int, rule_id: int) -> HttpResponse:
    viewer = require_permission(request, "card_types.change")
    card_type = _card_type_or_404(pk)
    rule = TopUpBonusRule.objects.filter(pk=rule_id, card_type=card_type).first()
    if rule is None:
        raise Http404
    try:
        programme.bonus_rule_delete(actor=viewer, rule=rule)
    except DomainError as error:
        refuse_if_forbidden(error)
        messages.error(request, error.message)
    else:
        messages.success(request, _("The bonus rule was removed."))
    return redirect("loyalty:card_type_edit", pk=card_type.pk)


@login_required
@require_POST
def tier_discount_set(request: HttpRequest, pk: int) -> HttpResponse:
    viewer = require_permission(request, "card_types.change")
    card_type = _card_type_or_404(pk)
    form = TierDiscountForm(request.POST)
    status = 422
    if form.is_valid():
        try:
            programme.card_type_tier_discount_set(
                actor=viewer,
                card_type=card_type,
                tier=form.cleaned_data["tier"],
                discount_permille=form.cleaned_data["discount_permille"],
            )
        except DomainError as error:
            refuse_if_forbidden(error)
            add_domain_error(form, error)
            status = error.status
        else:
            messages.success(request, _("The tier discount was saved."))
            return redirect("loyalty:card_type_edit", pk=card_type.pk)
    return _card_type_page(
        request,
        card_type,
        CardTypeForm(initial=card_type_initial(card_type)),
        status=status,
        discount_form=form,
    )


def _tier_or_404(pk: int) -> Tier:
    tier = Tier.objects.filter(pk=pk).first()
    if tier is None:
        raise Http404
    return tier


@login_required
@require_http_methods(["GET", "POST"])
def tier_create(request: HttpRequest) -> HttpResponse:
    viewer = require_permission(request, "card_types.create")
    form = TierForm(request.POST if request.method == "POST" else None)
    status = 200
    if request.method == "POST":
        status = 422
        if form.is_valid():
            try:
                tier = programme.tier_create(actor=viewer, data=form.service_data())
            except DomainError as error:
                refuse_if_forbidden(error)
                add_domain_error(form, error, field_map=TierForm.FIELD_MAP)
                status = error.status
            else:
                messages.success(request, _("Tier %(name)s was created.") % {"name": tier.name})
                return redirect("loyalty:card_type_list")
    return render(request, "loyalty/tier_form.html", {"form": form, "tier": None}, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def tier_edit(request: HttpRequest, pk: int) -> HttpResponse:
    viewer = require_permission(request, "card_types.view")
    tier = _tier_or_404(pk)
    status = 200
    if request.method == "POST":
        viewer = require_permission(request, "card_types.change")
        form = TierForm(request.POST)
        status = 422
        if form.is_valid():
            try:
                programme.tier_update(actor=viewer, tier=tier, data=form.service_data())
            except DomainError as error:
                refuse_if_forbidden(error)
                add_domain_error(form, error, field_map=TierForm.FIELD_MAP)
                status = error.status
            else:
                messages.success(request, _("Changes to %(name)s were saved.") % {"name": tier.name})
                return redirect("loyalty:card_type_list")
    else:
        form = TierForm(initial=tier_initial(tier))
    return render(request, "loyalty/tier_form.html", {"form": form, "tier": tier}, status=status)


# --- liabilities and reconcile -------------------------------------------------------------------
def _liability_context(viewer: User) -> dict[str, Any]:
    report = selectors.liability_report(viewer)
    owed = report.totals
    return {
        "liability": owed,
        "by_card_type": report.by_card_type,
        "stored_value": format_fen(owed.stored_value_fen),
        "points_value": format_fen(owed.points_value_fen),
    }


@login_required
@require_GET
def ledger_report(request: HttpRequest) -> HttpResponse:
    viewer = require_permission(request, "ledger.view")
    return render(request, "loyalty/ledger_report.html", _liability_context(viewer))


@login_required
@require_POST
def ledger_reconcile(request: HttpRequest) -> HttpResponse:
    """Prove cached balance == sum of entries for every account; the result is shown, nothing written."""
    viewer = require_permission(request, "ledger.view")
    report = ledger.reconcile()
    context = {
        **_liability_context(viewer),
        "report": report,
        "discrepancies": [
            {
                "card": item.card_number,
                "kind": item.kind,
                "cached": fen_to_str(item.cached) if item.kind == "stored_value" else item.cached,
                "from_entries": fen_to_str(item.from_entries)
                if item.kind == "stored_value"
                else item.from_entries,
                "detail": item.detail,
            }
            for item in report.discrepancies[:200]
        ],
    }
    return render(request, "loyalty/ledger_report.html", context)
