"""Huey tasks for merges: thin wrappers over kehu.dataops.services.merge."""

from __future__ import annotations

from huey.contrib.djhuey import db_task

from kehu.accounts.selectors import job_requester


@db_task()  # type: ignore[untyped-decorator]  # huey ships no type hints
def auto_merge_task(actor_id: int | None, threshold: float) -> list[int]:
    """Merge the sure duplicates in the consumer (a long run over many pairs); returns the merge ids.

    The actor is loaded again: the run keeps their permissions and scope as they are now.
    """
    from kehu.dataops.services.merge import auto_merge

    requester = job_requester(actor_id)
    if not requester.runs:
        return []
    return [merge.pk for merge in auto_merge(actor=requester.user, threshold=threshold)]
