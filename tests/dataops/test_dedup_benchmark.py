"""The labelled benchmark: the scan finds the duplicates of 2,000 people and leaves look-alikes apart.

The generator (bench/dedup_dataset.py) makes typos, homophones, swapped characters, pinyin
spellings, traditional characters, missing fields, other phone formats, namesakes and family
members who share a phone; the floor below is what the default threshold must keep.
"""

from __future__ import annotations

import pytest

from bench.dedup_dataset import generate, measure

pytestmark = pytest.mark.django_db(transaction=True)

F1_FLOOR = 0.93
PRECISION_FLOOR = 0.95
RECALL_FLOOR = 0.9


def test_generator_makes_every_kind_of_variant_and_is_deterministic() -> None:
    records = generate(300, seed=7)
    assert [record.row.name for record in records] == [record.row.name for record in generate(300, seed=7)]
    variants = {record.variant.split("-")[0].split("+")[0] for record in records}
    assert variants >= {
        "original",
        "same_name",
        "typo",
        "homophone",
        "swapped",
        "pinyin",
        "traditional",
        "namesake",
        "family",
    }
    assert any("birthday" in record.variant for record in records)


def test_precision_recall_and_f1_at_the_default_threshold_stay_above_the_floor() -> None:
    result = measure(persons=2000)
    figures = result["at_default"]
    assert result["records"] > 2600
    assert figures["f1"] >= F1_FLOOR, figures
    assert figures["precision"] >= PRECISION_FLOOR, figures
    assert figures["recall"] >= RECALL_FLOOR, figures
