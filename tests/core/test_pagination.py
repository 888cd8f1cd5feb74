"""Keyset pagination: walking every page equals one sorted list, over any multi-column ordering."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kehu.accounts.models import Department
from kehu.core.errors import ValidationFailed
from kehu.core.pagination import decode_cursor, encode_cursor, keyset_page

ORDERINGS = [
    ("-id",),
    ("name", "id"),
    ("depth", "-name", "id"),
    ("-created_at", "id"),
    ("-depth", "name", "-id"),
]
BASE_TIME = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _walk(ordering, limit):
    seen, cursor, pages = [], None, 0
    while True:
        page = keyset_page(Department.objects.all(), ordering=ordering, after=cursor, limit=limit)
        assert len(page.items) <= limit
        seen += [department.pk for department in page.items]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            return seen, pages


def _python_sorted(rows, ordering):
    # Stable sorts from the last key to the first give a multi-key sort with mixed directions.
    ordered = list(rows)
    for term in reversed(ordering):
        name = term.lstrip("-")
        ordered.sort(key=lambda row, name=name: getattr(row, name), reverse=term.startswith("-"))
    return [row.pk for row in ordered]


@pytest.mark.django_db
@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=st.lists(
        st.tuples(st.text(alphabet="abc", min_size=1, max_size=2), st.integers(0, 2), st.integers(0, 3)),
        max_size=14,
    ),
    ordering=st.sampled_from(ORDERINGS),
    limit=st.integers(1, 5),
)
def test_walking_every_page_matches_a_plain_sorted_list(rows, ordering, limit):
    # given rows with many ties (parent null, so names may repeat)
    Department.objects.all().delete()
    created = Department.objects.bulk_create(
        [
            Department(name=name, depth=depth, path="/", created_at=BASE_TIME + dt.timedelta(minutes=minute))
            for name, depth, minute in rows
        ]
    )
    # when
    seen, pages = _walk(ordering, limit)
    # then no duplicates, no gaps, in order
    assert seen == _python_sorted(Department.objects.all(), ordering)
    assert len(seen) == len(created)
    assert pages == max(1, -(-len(created) // limit))


def test_the_ordering_must_end_with_a_unique_id():
    with pytest.raises(ValueError, match="must end with id"):
        keyset_page(Department.objects.all(), ordering=("name",))


def test_a_cursor_round_trips_dates_times_and_decimals():
    values = [timezone.now(), dt.date(2026, 2, 3), Decimal("12.30"), "名字", 42]
    assert decode_cursor(encode_cursor(values), expected_length=5) == values


@pytest.mark.parametrize("cursor", ["***", "bm90LWpzb24", "WzEsMiwzXQ", "e30", "W3siZHQiOiJ4In1d"])
def test_a_broken_cursor_is_a_validation_error(cursor):
    with pytest.raises(ValidationFailed) as refused:
        decode_cursor(cursor, expected_length=1)
    assert list(refused.value.fields) == ["cursor"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "values",
    [[None, 1], ["a", "x"], ["a", [1]], ["a\x00", 1], ["a", 2**70]],
    ids=["null", "text_id", "list_id", "nul", "huge_id"],
)
def test_a_cursor_with_values_of_the_wrong_kind_is_refused_before_the_query(values):
    with pytest.raises(ValidationFailed):
        keyset_page(Department.objects.all(), ordering=("name", "id"), after=encode_cursor(values))


@pytest.mark.django_db
def test_a_naive_time_in_a_cursor_is_refused():
    cursor = encode_cursor([dt.datetime(2026, 1, 1), 1])  # noqa: DTZ001 -- the point of the test
    with pytest.raises(ValidationFailed):
        keyset_page(Department.objects.all(), ordering=("-created_at", "id"), after=cursor)


@pytest.mark.django_db
def test_the_limit_is_clamped(departments):
    assert len(keyset_page(Department.objects.all(), limit=0).items) == 1
    assert len(keyset_page(Department.objects.all(), limit=10_000).items) == 6
