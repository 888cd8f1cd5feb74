"""Huey jobs of the analytics recommendations area: thin wrappers over services."""

from __future__ import annotations

import datetime as dt

from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task

from kehu.accounts.selectors import job_requester
from kehu.analytics.services.recommendations import DEFAULT_SIMILARITY, recommendations_build


@db_task()  # type: ignore[untyped-decorator]  # huey's decorators are untyped
def recommendations_build_job(
    as_of: str | None = None, actor_id: int | None = None, similarity: str = DEFAULT_SIMILARITY
) -> int:
    """Build the recommendation model (queued from the API or the page); returns the fit's id
    (0: not run, the user who asked has since been deactivated)."""
    requester = job_requester(actor_id)
    if not requester.runs:
        return 0
    fit = recommendations_build(
        as_of=dt.date.fromisoformat(as_of) if as_of else None,
        actor=requester.user,
        similarity_name=similarity,
    )
    return fit.pk


# Huey's crontab runs in UTC: 20:55 UTC is 04:55 in Asia/Shanghai, after the nightly metrics.
@db_periodic_task(crontab(hour="20", minute="55"))  # type: ignore[untyped-decorator]  # huey is untyped
def recommendations_nightly() -> int:
    """Nightly: rebuild "also bought" and the next-best products from yesterday's purchases too."""
    return recommendations_build().pk
