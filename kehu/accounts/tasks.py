"""Periodic housekeeping for accounts, run by the Huey consumer."""

from huey import crontab
from huey.contrib.djhuey import db_periodic_task

from kehu.accounts.services import sessions_prune


@db_periodic_task(crontab(hour="3", minute="17"))
def prune_sessions() -> int:
    """Nightly: expired sessions and stale sign-in failures go."""
    return sessions_prune()
