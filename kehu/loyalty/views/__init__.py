"""The card and loyalty pages, thin over the services and selectors."""

from kehu.loyalty.views.cards import (
    card_action,
    card_detail,
    card_issue,
    card_ledger,
    card_list,
    card_type_price,
    customer_cards,
    customer_lookup,
)
from kehu.loyalty.views.programme import (
    bonus_rule_add,
    bonus_rule_remove,
    card_type_create,
    card_type_edit,
    card_type_list,
    ledger_reconcile,
    ledger_report,
    tier_create,
    tier_discount_set,
    tier_edit,
)

__all__ = [
    "bonus_rule_add",
    "bonus_rule_remove",
    "card_action",
    "card_detail",
    "card_issue",
    "card_ledger",
    "card_list",
    "card_type_create",
    "card_type_edit",
    "card_type_list",
    "card_type_price",
    "customer_cards",
    "customer_lookup",
    "ledger_reconcile",
    "ledger_report",
    "tier_create",
    "tier_discount_set",
    "tier_edit",
]
