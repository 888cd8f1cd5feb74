"""Huey jobs of the analytics dashboards area: thin wrappers over services."""

from __future__ import annotations

from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task

from kehu.analytics.services import dashboards


# Huey's schedule is in UTC: 19:50 UTC is 03:50 in Asia/Shanghai, after the night's metrics
# refresh and model fits (its distributions are taken from the metrics).
@db_periodic_task(crontab(hour="19", minute="50"))  # type: ignore[untyped-decorator]  # Huey's decorators are untyped
def dashboard_rebuild_nightly() -> int:
    """Nightly: every dashboard table recomputed from the orders; corrects the day's deltas."""
    return dashboards.dashboard_stats_rebuild().pk


@db_task()  # type: ignore[untyped-decorator]  # Huey's decorators are untyped
def dashboard_purchase_task(order_id: int) -> None:
    dashboards.dashboard_apply_purchase(order_id=order_id)


@db_task()  # type: ignore[untyped-decorator]  # Huey's decorators are untyped
def dashboard_refund_task(refund_id: int) -> None:
    dashboards.dashboard_apply_refund(refund_id=refund_id)


@db_task()  # type: ignore[untyped-decorator]  # Huey's decorators are untyped
def dashboard_card_issued_task(card_id: int) -> None:
    dashboards.dashboard_apply_card_issued(card_id=card_id)


@db_task()  # type: ignore[untyped-decorator]  # Huey's decorators are untyped
def dashboard_customer_created_task(customer_id: int) -> None:
    dashboards.dashboard_apply_customer_created(customer_id=customer_id)
