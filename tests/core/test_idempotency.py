"""Idempotency records: a retry replays the first response; old records are forgotten nightly."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from django.utils import timezone

from kehu.accounts.models import User
from kehu.core.idempotency import IdempotencyKeyReused, idempotency_records_prune, run_idempotent
from kehu.core.models import IdempotencyRecord

pytestmark = pytest.mark.django_db


def _counter() -> tuple[list[int], Callable[[], tuple[int, dict[str, int]]]]:
    calls: list[int] = []

    def perform() -> tuple[int, dict[str, int]]:
        calls.append(1)
        return 201, {"n": len(calls)}

    return calls, perform


def test_a_retry_replays_and_does_not_run_again(make_user: Callable[..., User]) -> None:
    user = make_user()
    calls, perform = _counter()
    first = run_idempotent(user_id=user.pk, operation="op", key="k-1", request_body={"a": 1}, perform=perform)
    again = run_idempotent(user_id=user.pk, operation="op", key="k-1", request_body={"a": 1}, perform=perform)
    assert (first.body, first.is_replay) == ({"n": 1}, False)
    assert (again.status, again.body, again.is_replay) == (201, {"n": 1}, True)
    assert len(calls) == 1
    with pytest.raises(IdempotencyKeyReused):
        run_idempotent(user_id=user.pk, operation="op", key="k-1", request_body={"a": 2}, perform=perform)


def test_records_older_than_a_week_are_pruned_and_the_key_works_again(make_user: Callable[..., User]) -> None:
    user = make_user()
    calls, perform = _counter()
    run_idempotent(user_id=user.pk, operation="op", key="old", request_body={}, perform=perform)
    run_idempotent(user_id=user.pk, operation="op", key="new", request_body={}, perform=perform)
    IdempotencyRecord.objects.filter(key="old").update(created_at=timezone.now() - dt.timedelta(days=8))
    assert idempotency_records_prune() == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new"]
    replay = run_idempotent(user_id=user.pk, operation="op", key="old", request_body={}, perform=perform)
    assert replay.is_replay is False
    assert len(calls) == 3
