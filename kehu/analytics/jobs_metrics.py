"""Huey jobs of the analytics metrics area: thin wrappers over services."""

from __future__ import annotations

import datetime as dt

from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task

from kehu.accounts.selectors import job_requester
from kehu.analytics.services.metrics import (
    MetricsRefreshRunning,
    metrics_refresh_customers,
    metrics_refresh_full,
)


# Retried: on SQLite a full refresh holds the write lock for its whole write phase.
@db_task(retries=3, retry_delay=120)  # type: ignore[untyped-decorator]  # huey's decorators are untyped
def metrics_refresh_customer_job(customer_id: int) -> int:
    """One customer's metrics after a purchase or a refund; idempotent."""
    return metrics_refresh_customers([customer_id])


@db_task()  # type: ignore[untyped-decorator]  # huey's decorators are untyped
def metrics_refresh_full_job(as_of: str | None = None, actor_id: int | None = None) -> int:
    """A full refresh asked for on the page or through the API; returns the run's id (0: not run).

    The refresh runs as the user who asked (their permission is checked again); a user who has
    since been deactivated gets nothing, never the operator's rights.
    """
    requester = job_requester(actor_id)
    if not requester.runs:
        return 0
    try:
        run = metrics_refresh_full(
            as_of=dt.date.fromisoformat(as_of) if as_of else None, actor=requester.user
        )
    except MetricsRefreshRunning:
        return 0  # another refresh got there first: its result is as fresh
    return run.pk


# Huey's schedule is in UTC. The nightly analytics run in this order, in the small hours of
# Asia/Shanghai (the default zone): metrics 02:17, CLV 02:50, churn 03:20, dashboards 03:50,
# recommendations 04:55 local time; each reads what the one before it wrote.
@db_periodic_task(crontab(hour="18", minute="17"))  # type: ignore[untyped-decorator]  # huey's decorators are untyped
def metrics_refresh_nightly() -> int:
    """Nightly: every customer's metrics as of today, before the models' nightly fits read them."""
    try:
        return metrics_refresh_full().pk
    except MetricsRefreshRunning:
        return 0
