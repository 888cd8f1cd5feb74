"""Precision, recall and F1 of found pairs against labelled truth.

The truth is which records belong to the same person: every two records of one person are a
true pair. A found pair counts when both records are labelled; scoring is pair-wise, the usual
measure for record linkage, and the clusters follow from the pairs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import combinations


@dataclass(frozen=True)
class Evaluation:
    true_pairs: int
    found_pairs: int
    correct_pairs: int

    @property
    def precision(self) -> float:
        return self.correct_pairs / self.found_pairs if self.found_pairs else 1.0

    @property
    def recall(self) -> float:
        return self.correct_pairs / self.true_pairs if self.true_pairs else 1.0

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "true_pairs": self.true_pairs,
            "found_pairs": self.found_pairs,
            "correct_pairs": self.correct_pairs,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
        }


def true_pairs(person_of: Mapping[int, int]) -> set[tuple[int, int]]:
    """Every pair (smaller id first) of records labelled with the same person."""
    records: defaultdict[int, list[int]] = defaultdict(list)
    for record_id, person in person_of.items():
        records[person].append(record_id)
    return {
        (min(first, second), max(first, second))
        for members in records.values()
        for first, second in combinations(sorted(members), 2)
    }


def evaluate(found: Iterable[tuple[int, int]], person_of: Mapping[int, int]) -> Evaluation:
    """Compare found pairs with the labels; pairs with an unlabelled record are ignored."""
    truth = true_pairs(person_of)
    found_set = {
        (min(first, second), max(first, second))
        for first, second in found
        if first in person_of and second in person_of
    }
    return Evaluation(true_pairs=len(truth), found_pairs=len(found_set), correct_pairs=len(found_set & truth))
