"""Periodic housekeeping for the core tables, run by the Huey consumer."""

from huey import crontab
from huey.contrib.djhuey import db_periodic_task

from kehu.core.idempotency import idempotency_records_prune


@db_periodic_task(crontab(hour="3", minute="29"))
def prune_idempotency_records() -> int:
    """Nightly: stored responses of Idempotency-Key requests older than a week go."""
    return idempotency_records_prune()
