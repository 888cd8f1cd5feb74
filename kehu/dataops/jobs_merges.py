"""Huey tasks for merges: thin wrappers over kehu.dataops.services.merge."""

from __future__ import annotations

from huey.contrib.djhuey import db_task

from kehu.accounts.models import User


@db_task()  # type: ignore[untyped-decorator]  # huey ships no type hints
def auto_merge_task(actor_id: int | None, threshold: float) -> list[int]:
    """Merge the sure duplicates in the consumer (a long run over many pairs); returns the merge ids.

    The actor is loaded again: the run keeps their permissions and scope as they are now.
    """
    from kehu.dataops.services.merge import auto_merge

    actor = User.objects.filter(pk=actor_id, is_active=True).first() if actor_id is not None else None
    if actor_id is not None and actor is None:
        return []
    return [merge.pk for merge in auto_merge(actor=actor, threshold=threshold)]
