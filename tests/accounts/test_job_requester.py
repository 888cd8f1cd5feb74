"""Who a queued job runs as: the asker as they are now, and never the operator instead."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from kehu.accounts.selectors import job_requester

pytestmark = pytest.mark.django_db


def test_a_job_without_an_asker_runs_as_the_operator() -> None:
    requester = job_requester(None)
    assert (requester.runs, requester.user) == (True, None)


def test_an_active_asker_is_loaded_again(make_user: Callable[..., Any]) -> None:
    asker = make_user(permissions=["analytics.change"])
    requester = job_requester(asker.pk)
    assert requester.runs
    assert requester.user == asker


@pytest.mark.parametrize("gone", ["deactivated", "deleted"])
def test_an_asker_who_is_gone_stops_the_job(make_user: Callable[..., Any], gone: str) -> None:
    asker = make_user(permissions=["analytics.change"])
    asker_id = asker.pk
    if gone == "deactivated":
        asker.is_active = False
        asker.save(update_fields=["is_active"])
    else:
        asker.delete()
    requester = job_requester(asker_id)
    assert (requester.runs, requester.user) == (False, None)
