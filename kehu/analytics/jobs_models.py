"""Huey jobs of the analytics models area: thin wrappers over services.

The nightly metrics refresh runs first (jobs_metrics); the CLV fit follows and then the churn
model, which uses the fresh P(alive) as a feature (schedule in UTC; see jobs_metrics).
"""

from __future__ import annotations

import datetime as dt

from django.utils import timezone
from huey import crontab
from huey.contrib.djhuey import db_periodic_task

from kehu.analytics.services.models import churn_train, clv_fit


# 02:50 Asia/Shanghai, after the metrics.
@db_periodic_task(crontab(hour="18", minute="50"))  # type: ignore[untyped-decorator]  # Huey's decorators are untyped  # type: ignore[untyped-decorator]  # Huey's decorators are untyped
def clv_fit_nightly() -> str:
    """Refit the CLV models on yesterday's data; a refusal is recorded on the fit, not raised."""
    return str(clv_fit(as_of=_yesterday()).status)


# 03:20 Asia/Shanghai, after the CLV fit.
@db_periodic_task(crontab(hour="19", minute="20"))  # type: ignore[untyped-decorator]  # Huey's decorators are untyped  # type: ignore[untyped-decorator]  # Huey's decorators are untyped
def churn_train_nightly() -> str:
    """Retrain the churn model on data up to yesterday (the last whole day)."""
    return str(churn_train(as_of=_yesterday()).status)


def _yesterday() -> dt.date:
    return timezone.localdate() - dt.timedelta(days=1)
