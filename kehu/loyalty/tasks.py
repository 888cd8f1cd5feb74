"""Nightly card and points jobs, run by the Huey consumer (thin wrappers over the services).

Cards expire first, then points lots, then reminders for lots expiring soon. Huey's crontab
runs in UTC; the services decide by the business's local date and time, and a card past its
last valid day is refused at the counter even before its job has run, so the hour only
decides when statuses catch up.
"""

from huey import crontab
from huey.contrib.djhuey import db_periodic_task

from kehu.loyalty.services.cards import cards_expire_due, points_expire_due, points_expiry_remind


@db_periodic_task(crontab(hour="0", minute="5"))
def expire_cards() -> int:
    """Nightly: active cards past their last valid day become expired."""
    return cards_expire_due()


@db_periodic_task(crontab(hour="0", minute="15"))
def expire_points() -> int:
    """Nightly: what is left of every expired points lot is taken off, one EXPIRY entry per lot."""
    return points_expire_due()


@db_periodic_task(crontab(hour="9", minute="0"))
def remind_points_expiring() -> int:
    """Daily: one points_expiring signal per lot entering the reminder window (once per lot)."""
    return points_expiry_remind()


# --- coupons and tiers (appended by the commerce side; imports local to leave the part above as is)
@db_periodic_task(crontab(hour="0", minute="25"))
def expire_coupons() -> int:
    """Nightly: available coupons past their end become expired (one UPDATE)."""
    from kehu.loyalty.services.coupons import coupons_expire_due

    return coupons_expire_due()


@db_periodic_task(crontab(hour="1", minute="0"))
def evaluate_tiers() -> int:
    """Nightly: every active card's tier by the rolling-window rule (aggregates in SQL, in batches)."""
    from kehu.loyalty.services.tiers import tiers_evaluate_all

    return tiers_evaluate_all()
