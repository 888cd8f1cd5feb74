"""Changing the business's analytics settings (activity thresholds, churn horizon, CLV discount)."""

from __future__ import annotations

from typing import Any, Final

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from kehu.accounts.models import User
from kehu.analytics.models import AnalyticsSettings
from kehu.analytics.services.metrics import analytics_settings
from kehu.core.audit import audit_record
from kehu.core.errors import ValidationFailed
from kehu.core.permissions import ensure_permitted

# Field -> (smallest, largest) accepted value; None is allowed for the two overrides only.
LIMITS: Final[dict[str, tuple[int, int]]] = {
    "active_within_days": (1, 3650),
    "dormant_after_days": (2, 3650),
    "churn_horizon_days": (7, 3650),
    "clv_monthly_discount_permille": (0, 500),
    "clv_horizon_months": (1, 120),
}
NULLABLE: Final = frozenset({"active_within_days", "dormant_after_days"})


def _checked(field: str, value: Any) -> int | None:
    if value is None:
        if field in NULLABLE:
            return None
        raise ValidationFailed.for_field(field, _("This field is required."))
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationFailed.for_field(field, _("Enter a whole number."))
    low, high = LIMITS[field]
    if not low <= value <= high:
        raise ValidationFailed.for_field(
            field, _("Enter a number from %(low)s to %(high)s.") % {"low": low, "high": high}
        )
    return value


@transaction.atomic
def analytics_settings_update(*, actor: User | None, changes: dict[str, Any]) -> AnalyticsSettings:
    """Change some settings; the overrides take effect at the next refresh (full or incremental).

    "Dormant after" must be longer than "active within" when both are set.
    """
    ensure_permitted(actor, "analytics.change")
    unknown = set(changes) - set(LIMITS)
    if unknown:
        field = sorted(unknown)[0]
        raise ValidationFailed.for_field(field, _("Unknown setting."))
    preferences = analytics_settings()
    before = {field: getattr(preferences, field) for field in LIMITS}
    for field, value in changes.items():
        setattr(preferences, field, _checked(field, value))
    active, dormant = preferences.active_within_days, preferences.dormant_after_days
    if active is not None and dormant is not None and dormant <= active:
        raise ValidationFailed.for_field(
            "dormant_after_days", _("Dormant must start after the active period ends.")
        )
    preferences.updated_at = timezone.now()
    preferences.save()
    after = {field: getattr(preferences, field) for field in LIMITS}
    audit_record(
        actor=actor, action="analytics.settings_update", target=preferences, before=before, after=after
    )
    return preferences
