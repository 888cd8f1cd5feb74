"""Navigation entries for the base layout, filtered by what the user may see."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

# (url name, label, permission needed or "" for every signed-in user)
NAVIGATION = [
    ("web:home", _("Home"), ""),
    ("customers:list", _("Customers"), "customers.view"),
    ("selfservice:review_queue", _("Customer changes"), "customers.change"),
    ("loyalty:card_list", _("Cards"), "cards.view"),
    ("commerce:pos", _("Sales"), "orders.create"),
    ("commerce:order_list", _("Orders"), "orders.view"),
    ("loyalty:card_type_list", _("Card types"), "card_types.view"),
    ("commerce:product_list", _("Products"), "products.view"),
    ("loyalty:ledger_report", _("Liabilities"), "ledger.view"),
    ("analytics:dashboard", _("Dashboard"), "analytics.view"),
    ("marketing:segment_list", _("Segments"), "segments.view"),
    ("analytics:model_report", _("Models"), "analytics.view"),
    ("dataops:import_list", _("Imports"), "imports.view"),
    ("dataops:export_list", _("Exports"), "customers.export"),
    ("dataops:merge_queue", _("Duplicates"), "duplicates.view"),
    ("dataops:quality_report", _("Data quality"), "data_quality.view"),
    ("web:user_list", _("Users"), "users.view"),
    ("web:department_list", _("Departments"), "departments.view"),
    ("web:role_list", _("Roles"), "roles.view"),
    ("web:token_list", _("API tokens"), ""),
    ("web:audit_list", _("Audit log"), "audit.view"),
]


# Apps with several menu entries: which views (by name prefix) belong to which entry.
ENTRY_VIEWS = {
    "loyalty:card_list": (
        "card_list",
        "card_issue",
        "card_detail",
        "card_ledger",
        "card_action",
        "customer_lookup",
        "card_type_price",
        "customer_cards",
    ),
    "loyalty:card_type_list": (
        "card_type_list",
        "card_type_create",
        "card_type_edit",
        "tier_",
        "bonus_rule_",
    ),
    "loyalty:ledger_report": ("ledger_",),
    "commerce:pos": ("pos",),
    "commerce:order_list": ("order_", "customer_orders"),
    "commerce:product_list": ("product_", "category_"),
    "analytics:dashboard": ("dashboard",),
    "analytics:model_report": ("model_", "metrics_"),
    "dataops:import_list": ("import_",),
    "dataops:export_list": ("export_",),
    "dataops:merge_queue": ("merge_", "dedup_"),
    "dataops:quality_report": ("quality_",),
}


def _is_current(current: str, entry: str) -> bool:
    """An app's own namespace (customers:...) is current on any of its pages; web:user_* on the user pages."""
    if entry in ENTRY_VIEWS:
        namespace, _sep, view = current.partition(":")
        if namespace != entry.split(":", 1)[0]:
            return False
        return any(view.startswith(prefix) for prefix in ENTRY_VIEWS[entry])
    namespace = entry.split(":", 1)[0]
    if namespace != "web":
        return current.split(":", 1)[0] == namespace
    return current == entry or current.startswith(entry.rsplit("_", 1)[0])


def navigation(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"navigation": []}
    current = request.resolver_match.view_name if request.resolver_match else ""
    entries = []
    for name, label, permission in NAVIGATION:
        if permission and not user.has_perm(permission):
            continue
        try:
            url = reverse(name)
        except Exception:  # noqa: BLE001,S112 -- a page not yet built is simply left out of the menu
            continue
        entries.append(
            {
                "url": url,
                "label": label,
                "is_current": _is_current(current, name),
            }
        )
    return {"navigation": entries}
