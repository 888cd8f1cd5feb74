from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class LoyaltyConfig(AppConfig):
    name = "kehu.loyalty"
    label = "loyalty"
    verbose_name = _("Cards and loyalty")

    def ready(self) -> None:
        from kehu.core.permissions import Action, register_resource

        register_resource("cards", _("Membership cards"), actions=tuple(Action.values), is_scoped=True)
        register_resource(
            "card_types",
            _("Card types, tiers and bonus rules"),
            actions=("view", "create", "change", "delete"),
            is_scoped=False,
        )
        # Manual adjustments create or destroy value: a permission of their own (issue 4).
        register_resource("ledger", _("Ledgers"), actions=("view", "change", "export"), is_scoped=False)
        register_resource(
            "coupons", _("Coupons"), actions=("view", "create", "change", "delete"), is_scoped=True
        )
