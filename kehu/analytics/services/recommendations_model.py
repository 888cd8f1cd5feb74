"""The co-occurrence recommendation model and its hold-out evaluation: NumPy and SciPy only, no
database (the data and the service are in kehu/analytics/services/recommendations.py).

``X`` is the sparse customer × product matrix (1 = bought); ``C = XᵀX`` counts the customers who
bought both products of a pair (its diagonal: the customers who bought each product). The score
of "bought *i*, also bought *j*" is a normalisation of ``C_ij`` (cosine by default); pairs bought
together by fewer than ``MIN_SUPPORT`` customers are noise and left out. Memory stays
proportional to the number of distinct pairs: no dense customer matrix is ever made; scoring
runs over sparse chunks of customers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import scipy.sparse as sp

Progress = Callable[[str, int, int], None]


IntArray = np.ndarray[Any, np.dtype[np.signedinteger[Any]]]


FloatArray = np.ndarray[Any, np.dtype[np.float64]]


# Related products kept per product.
TOP_K: Final = 20


# Recommendations per customer in the hold-out (precision@5, recall@5).
AT: Final = 5


# A pair bought together by fewer customers than this is not evidence of anything.
MIN_SUPPORT: Final = 2


# The hold-out is scored on at most this many customers (a fixed random sample): the standard
# error of precision@5 is then below 0.002, and the evaluation's cost stays bounded at 1M.
EVAL_MAX_CUSTOMERS: Final = 100_000


CHUNK_CELLS: Final = 4_000_000


# Up to this many products, a chunk of customers is ranked as a dense array (CHUNK_CELLS cells).
DENSE_MAX_PRODUCTS: Final = 4_096


@dataclass(frozen=True)
class Pairs:
    """Distinct (customer, product) purchases, in compact indexes, with first and last local day."""

    customer: IntArray  # index into customer_ids
    product: IntArray  # index into product_ids
    first_day: IntArray
    last_day: IntArray
    customer_ids: IntArray
    product_ids: IntArray

    @property
    def customers(self) -> int:
        return len(self.customer_ids)

    @property
    def products(self) -> int:
        return len(self.product_ids)


@dataclass(frozen=True)
class Affinity:
    """The kept related products: ``product[i] → related[i]`` with ``together`` and ``score``."""

    product: IntArray
    related: IntArray
    together: IntArray
    score: FloatArray

    def matrix(self, products: int) -> sp.csr_matrix:
        return sp.csr_matrix((self.score, (self.product, self.related)), shape=(products, products))


def purchase_matrix(customer: IntArray, product: IntArray, shape: tuple[int, int]) -> sp.csr_matrix:
    """Sparse customers × products, 1 where the customer bought the product (pairs are distinct)."""
    ones = np.ones(len(customer), dtype=np.int32)
    matrix = sp.csr_matrix((ones, (customer, product)), shape=shape)
    matrix.sum_duplicates()
    matrix.data[:] = 1
    return matrix


def similarity(
    name: str, together: FloatArray, left: FloatArray, right: FloatArray, customers: int
) -> FloatArray:
    """Score of "bought left, also bought right" from co-purchase and per-product buyer counts."""
    if name == "cosine":
        return together / np.sqrt(left * right)
    if name == "jaccard":
        return together / (left + right - together)
    if name == "lift":
        return together * customers / (left * right)
    if name == "conditional":  # P(right | left): ranks by the related product's popularity
        return together / left
    raise ValueError(name)


def rank_within_rows(rows: IntArray) -> IntArray:
    """0, 1, 2 ... within each run of equal ``rows`` (which must be sorted)."""
    if len(rows) == 0:
        return np.zeros(0, dtype=np.int64)
    index = np.arange(len(rows))
    starts = np.r_[True, rows[1:] != rows[:-1]]
    return index - np.maximum.accumulate(np.where(starts, index, 0))


@dataclass(frozen=True)
class CoOccurrence:
    """The off-diagonal pairs of ``C = XᵀX`` worth scoring, and each product's buyers (the diagonal)."""

    rows: IntArray
    cols: IntArray
    together: IntArray
    buyers: FloatArray
    customers: int


def cooccurrence(
    matrix: sp.csr_matrix, *, recommendable: np.ndarray[Any, np.dtype[np.bool_]]
) -> CoOccurrence:
    """``C = XᵀX`` once (sparse), keeping pairs with enough support whose related product is on sale."""
    buyers = np.asarray(matrix.sum(axis=0)).ravel().astype(np.float64)
    co = (matrix.T.tocsr() @ matrix).tocoo()
    rows, cols, together = co.row.astype(np.int64), co.col.astype(np.int64), co.data.astype(np.int64)
    keep = (rows != cols) & (together >= MIN_SUPPORT) & recommendable[cols]
    return CoOccurrence(rows[keep], cols[keep], together[keep], buyers, matrix.shape[0])


def affinity_fit(co: CoOccurrence, *, method: str, top_k: int = TOP_K) -> Affinity:
    """The co-occurrence scored by ``method``, pruned to the ``top_k`` best related products per product."""
    rows, cols, together = co.rows, co.cols, co.together
    score = similarity(method, together.astype(np.float64), co.buyers[rows], co.buyers[cols], co.customers)
    # By product, best score first, ties to the more co-purchased and then the lower index.
    order = np.lexsort((cols, -together, -score, rows))
    rows, cols, together, score = rows[order], cols[order], together[order], score[order]
    kept = rank_within_rows(rows) < top_k
    return Affinity(product=rows[kept], related=cols[kept], together=together[kept], score=score[kept])


def popularity_order(matrix: sp.csr_matrix, recommendable: np.ndarray[Any, np.dtype[np.bool_]]) -> IntArray:
    """Recommendable products by number of buyers, most first (ties: lower index first)."""
    buyers = np.asarray(matrix.sum(axis=0)).ravel()
    candidates = np.flatnonzero(recommendable & (buyers > 0))
    return candidates[np.lexsort((candidates, -buyers[candidates]))]


def _keys(rows: IntArray, cols: IntArray, width: int) -> IntArray:
    return rows * width + cols


def _matrix_keys(matrix: sp.csr_matrix) -> IntArray:
    rows, cols = matrix.nonzero()
    return _keys(np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64), matrix.shape[1])


def _first_per_row(rows: IntArray, cols: IntArray, priority: FloatArray, k: int) -> tuple[IntArray, IntArray]:
    """Per row, the ``k`` columns of lowest priority, each column once."""
    order = np.lexsort((priority, cols, rows))
    rows, cols, priority = rows[order], cols[order], priority[order]
    first = np.r_[True, (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])] if len(rows) else np.zeros(0, bool)
    rows, cols, priority = rows[first], cols[first], priority[first]
    order = np.lexsort((cols, priority, rows))
    rows, cols = rows[order], cols[order]
    kept = rank_within_rows(rows) < k
    return rows[kept], cols[kept]


def _popular_candidates(held: sp.csr_matrix, popular: IntArray) -> tuple[IntArray, IntArray, FloatArray]:
    """For each row, the first ``AT + held`` popular products: at least ``AT`` of them are not held."""
    lengths = np.minimum(AT + np.diff(held.indptr), len(popular)).astype(np.int64)
    rows = np.repeat(np.arange(held.shape[0]), lengths)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    position = np.arange(int(lengths.sum())) - starts
    return rows, popular[position], position.astype(np.float64)


def recommend_chunk(
    held: sp.csr_matrix, scores: sp.csr_matrix | None, popular: IntArray, *, dense: bool | None = None
) -> tuple[IntArray, IntArray]:
    """Top ``AT`` (row, product) per row of ``held``: by summed affinity, then by popularity.

    ``scores`` None gives the popularity baseline alone. Products held are never recommended.
    A catalogue of up to ``DENSE_MAX_PRODUCTS`` is ranked on a dense chunk (``argpartition``,
    fastest); a larger one through sorted sparse entries, whose size follows the purchases.
    """
    if dense if dense is not None else held.shape[1] <= DENSE_MAX_PRODUCTS:
        return _recommend_dense(held, scores, popular)
    width = held.shape[1]
    held_keys = _matrix_keys(held)
    rows, cols, priority = _popular_candidates(held, popular)
    # Popular products only fill the places the affinity scores leave empty.
    priority = priority + AT
    if scores is not None:
        summed = (held @ scores).tocoo()
        score_rows, score_cols = summed.row.astype(np.int64), summed.col.astype(np.int64)
        fresh = ~np.isin(_keys(score_rows, score_cols, width), held_keys)
        top_rows, top_cols = _first_per_row(
            score_rows[fresh], score_cols[fresh], -summed.data[fresh].astype(np.float64), AT
        )
        rows = np.concatenate([top_rows, rows])
        cols = np.concatenate([top_cols, cols])
        priority = np.concatenate([rank_within_rows(top_rows).astype(np.float64), priority])
    fresh = ~np.isin(_keys(rows, cols, width), held_keys)
    return _first_per_row(rows[fresh], cols[fresh], priority[fresh], AT)


def _recommend_dense(
    held: sp.csr_matrix, scores: sp.csr_matrix | None, popular: IntArray
) -> tuple[IntArray, IntArray]:
    n_rows, width = held.shape
    # Popular products rank in (0, 1], first the most popular; products never recommended: -inf.
    base = np.full(width, -np.inf)
    base[popular] = 1.0 - np.arange(len(popular)) / (len(popular) + 1)
    grid = np.tile(base, (n_rows, 1))
    if scores is not None:
        summed = (held @ scores).toarray()
        positive = summed > 0
        # Any affinity ranks above every popular product: they only fill the empty places.
        grid[positive] = summed[positive] + 2.0
        del summed, positive
    held_rows, held_cols = held.nonzero()
    grid[held_rows, held_cols] = -np.inf
    k = min(AT, width)
    top = np.argpartition(-grid, k - 1, axis=1)[:, :k]
    values = np.take_along_axis(grid, top, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    top, values = np.take_along_axis(top, order, axis=1), np.take_along_axis(values, order, axis=1)
    valid = np.isfinite(values)
    rows = np.broadcast_to(np.arange(n_rows)[:, None], (n_rows, k))
    return rows[valid].astype(np.int64), top[valid].astype(np.int64)


@dataclass
class Scores:
    """Sums of the per-customer figures of one recommender over the evaluated customers."""

    precision: float = 0.0
    recall: float = 0.0
    hits: int = 0
    customers: int = 0
    recommended: set[int] | None = None

    def add(self, rows: IntArray, cols: IntArray, truth: sp.csr_matrix) -> None:
        width = truth.shape[1]
        truth_keys = _matrix_keys(truth)
        hit = np.isin(_keys(rows, cols, width), truth_keys)
        per_row = np.bincount(rows[hit], minlength=truth.shape[0])
        relevant = np.diff(truth.indptr)
        self.precision += float((per_row / AT).sum())
        self.recall += float((per_row / relevant).sum())
        self.hits += int(per_row.sum())
        self.customers += truth.shape[0]
        self.recommended = (self.recommended or set()) | set(np.unique(cols).tolist())

    def summary(self, products: int) -> dict[str, Any]:
        if not self.customers:
            return {"precision_at_5": None, "recall_at_5": None, "hits": 0, "coverage": None}
        return {
            "precision_at_5": round(self.precision / self.customers, 4),
            "recall_at_5": round(self.recall / self.customers, 4),
            "hits": self.hits,
            "coverage": round(len(self.recommended or ()) / products, 4) if products else None,
        }


def _chunks(total: int, width: int) -> Iterator[slice]:
    size = max(1_000, CHUNK_CELLS // max(width, 1))
    for start in range(0, total, size):
        yield slice(start, min(total, start + size))


def holdout_evaluate(
    pairs: Pairs,
    *,
    recommendable: np.ndarray[Any, np.dtype[np.bool_]],
    methods: tuple[str, ...],
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Hide each repeat customer's last purchase day, rebuild, and score the 5 recommendations."""
    n_customers, n_products = pairs.customers, pairs.products
    first = np.full(n_customers, np.iinfo(np.int64).max, dtype=np.int64)
    last = np.full(n_customers, np.iinfo(np.int64).min, dtype=np.int64)
    np.minimum.at(first, pairs.customer, pairs.first_day)
    np.maximum.at(last, pairs.customer, pairs.last_day)
    repeat = first < last
    # New on the last day: first bought then. A product bought before and again is known already.
    hidden = repeat[pairs.customer] & (pairs.first_day == last[pairs.customer])
    shape = (n_customers, n_products)
    train = purchase_matrix(pairs.customer[~hidden], pairs.product[~hidden], shape)
    truth_all = purchase_matrix(pairs.customer[hidden], pairs.product[hidden], shape)
    evaluated = np.unique(pairs.customer[hidden])
    result: dict[str, Any] = {
        "protocol": "last_purchase_day",
        "repeat_customers": int(repeat.sum()),
        "customers_evaluated": 0,
        "customers_eligible": len(evaluated),
        "hidden_purchases": int(hidden.sum()),
    }
    if len(evaluated) == 0:
        return result
    if len(evaluated) > EVAL_MAX_CUSTOMERS:
        generator = np.random.default_rng(20_240_601)
        evaluated = np.sort(generator.choice(evaluated, EVAL_MAX_CUSTOMERS, replace=False))
    held_all = train[evaluated]
    truth_all = truth_all[evaluated]
    popular = popularity_order(train, recommendable)
    co = cooccurrence(train, recommendable=recommendable)
    models = {method: affinity_fit(co, method=method).matrix(n_products) for method in methods}
    tallies = {name: Scores() for name in (*methods, "popularity")}
    recommendable_count = int(recommendable.sum())
    chunks = list(_chunks(len(evaluated), n_products))
    for done, part in enumerate(chunks, start=1):
        held, truth = held_all[part], truth_all[part]
        tallies["popularity"].add(*recommend_chunk(held, None, popular), truth)
        for method, model in models.items():
            tallies[method].add(*recommend_chunk(held, model, popular), truth)
        if progress:
            progress("evaluate", done, len(chunks))
    result["customers_evaluated"] = len(evaluated)
    result["relevant_per_customer"] = round(float(np.diff(truth_all.indptr).mean()), 3)
    result["held_per_customer"] = round(float(np.diff(held_all.indptr).mean()), 3)
    result["methods"] = {name: tally.summary(recommendable_count) for name, tally in tallies.items()}
    return result
