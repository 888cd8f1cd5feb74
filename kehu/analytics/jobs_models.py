"""Huey jobs of the analytics models area: thin wrappers over services.

The nightly metrics refresh runs first (jobs_metrics); the CLV fit follows and then the churn
model, which uses the fresh P(alive) as a feature (schedule in UTC; see jobs_metrics).
"""

from __future__ import annotations

import datetime as dt

from django.utils import timezone
from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task

from kehu.accounts.selectors import job_requester
from kehu.analytics.services.churn import churn_train
from kehu.analytics.services.clv import clv_fit


@db_task()  # type: ignore[untyped-decorator]  # Huey's decorators are untyped
def clv_fit_job(as_of: str | None = None, holdout_days: int = 90, actor_id: int | None = None) -> int:
    """A CLV fit asked for on the page or through the API; returns the fit's id (0: not run)."""
    requester = job_requester(actor_id)
    if not requester.runs:
        return 0
    day = dt.date.fromisoformat(as_of) if as_of else None
    return clv_fit(as_of=day, holdout_days=holdout_days, actor=requester.user).pk


@db_task()  # type: ignore[untyped-decorator]  # Huey's decorators are untyped
def churn_train_job(as_of: str | None = None, actor_id: int | None = None) -> int:
    """A churn training asked for on the page or through the API; returns the fit's id (0: not run)."""
    requester = job_requester(actor_id)
    if not requester.runs:
        return 0
    return churn_train(as_of=dt.date.fromisoformat(as_of) if as_of else None, actor=requester.user).pk


# 02:50 Asia/Shanghai, after the metrics.
@db_periodic_task(crontab(hour="18", minute="50"))  # type: ignore[untyped-decorator]  # Huey's decorators are untyped
def clv_fit_nightly() -> str:
    """Refit the CLV models on yesterday's data; a refusal is recorded on the fit, not raised."""
    return str(clv_fit(as_of=_yesterday()).status)


# 03:20 Asia/Shanghai, after the CLV fit.
@db_periodic_task(crontab(hour="19", minute="20"))  # type: ignore[untyped-decorator]  # Huey's decorators are untyped
def churn_train_nightly() -> str:
    """Retrain the churn model on data up to yesterday (the last whole day)."""
    return str(churn_train(as_of=_yesterday()).status)


def _yesterday() -> dt.date:
    return timezone.localdate() - dt.timedelta(days=1)
