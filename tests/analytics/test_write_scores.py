"""Writing model scores back to the customer metrics: set for the scored, cleared for the rest."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from kehu.analytics.models import CustomerMetrics
from kehu.analytics.services.models import write_scores

pytestmark = pytest.mark.django_db


def _clv(customer_id: int) -> int | None:
    return CustomerMetrics.objects.get(customer_id=customer_id).clv_fen


def test_a_second_write_updates_the_scored_and_clears_everyone_else(
    make_customers: Callable[..., Any],
) -> None:
    # given three customers scored once (no metrics rows yet: they are created)
    first, second, third = make_customers(3)
    ids = np.array([first.pk, second.pk, third.pk], dtype=np.int64)
    assert write_scores(ids, {"clv_fen": ("BIGINT", np.array([100, 200, 300]))}) == 3
    assert [_clv(customer.pk) for customer in (first, second, third)] == [100, 200, 300]
    # when the next fit scores only the first two, with new values
    ids = np.array([first.pk, second.pk], dtype=np.int64)
    written = write_scores(ids, {"clv_fen": ("BIGINT", np.array([150, 250]))})
    # then those two change and the third no longer has a score; other columns are untouched
    assert written == 2
    assert [_clv(customer.pk) for customer in (first, second, third)] == [150, 250, None]
    assert CustomerMetrics.objects.filter(churn_risk__isnull=False).count() == 0
