"""Product recommendations: item-to-item co-occurrence, evaluated on each customer's last purchase.

The method (docs/recommendations.md):

1. One SQL ``GROUP BY`` reads the distinct (customer, product) pairs that still count (the line
   not fully refunded, the order not fully refunded, ordered up to ``as_of``), with the first and
   last local day each pair was bought. Nothing else is read, and never one row per order line
   into Python objects: the rows stream into NumPy arrays a chunk at a time.
2. ``X`` is the sparse customer × product matrix (1 = bought); ``C = XᵀX`` counts the customers
   who bought both products of a pair (its diagonal: the customers who bought each product).
3. The score of "bought *i*, also bought *j*" is the cosine ``C_ij / sqrt(C_ii · C_jj)`` (other
   normalisations are compared on the hold-out and reported); pairs bought together by fewer than
   ``MIN_SUPPORT`` customers are noise and left out. The ``TOP_K`` best related products (on sale)
   of each product are kept in :class:`ProductAffinity`, replaced in one transaction.
4. Hold-out: for every customer with purchases on two or more days, the products first bought on
   their last purchase day are hidden; the model is rebuilt from everything else and recommends 5
   products the customer did not hold. Precision@5 and recall@5 are compared with the popularity
   baseline (the 5 most popular products the customer does not hold).

Memory stays proportional to the number of distinct pairs: no dense customer matrix is ever
made; scoring runs over sparse chunks of customers.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final
from zoneinfo import ZoneInfo

import numpy as np
import scipy.sparse as sp
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max, Min
from django.utils import timezone
from django.utils.translation import gettext as _

from kehu.accounts.models import User
from kehu.analytics.models import FitKind, FitStatus, ModelFit, ProductAffinity
from kehu.commerce.models import Order, OrderLine, Product
from kehu.core.audit import audit_record
from kehu.core.errors import ValidationFailed
from kehu.core.permissions import ensure_permitted

Progress = Callable[[str, int, int], None]
IntArray = np.ndarray[Any, np.dtype[np.signedinteger[Any]]]
FloatArray = np.ndarray[Any, np.dtype[np.float64]]

# Related products kept per product.
TOP_K: Final = 20
# Recommendations per customer in the hold-out (precision@5, recall@5).
AT: Final = 5
# A pair bought together by fewer customers than this is not evidence of anything.
MIN_SUPPORT: Final = 2
# Below these the model refuses to fit and says why.
MIN_CUSTOMERS: Final = 50
MIN_PRODUCTS: Final = 6  # 5 recommendations need at least one product more than a customer holds
MIN_CO_PURCHASERS: Final = 20  # customers with two or more different products
# The hold-out is scored on at most this many customers (a fixed random sample): the standard
# error of precision@5 is then below 0.002, and the evaluation's cost stays bounded at 1M.
EVAL_MAX_CUSTOMERS: Final = 100_000
# Most popular products remembered with the fit: the fallback for customers who hold nothing.
POPULAR_KEPT: Final = 100
SIMILARITIES: Final = ("cosine", "jaccard", "lift", "conditional")
DEFAULT_SIMILARITY: Final = "cosine"
# Rows per fetch from the pairs query, and (customers × products) cells per scoring chunk.
FETCH_ROWS: Final = 100_000
INT32_MAX: Final = 2**31 - 1
# Customer ids per pairs query on SQLite.
CUSTOMER_SLICE: Final = 100_000
CHUNK_CELLS: Final = 4_000_000
# Up to this many products, a chunk of customers is ranked as a dense array (CHUNK_CELLS cells).
DENSE_MAX_PRODUCTS: Final = 4_096


# --- the data -------------------------------------------------------------------------------------
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


def _day_expression(vendor: str, offset_seconds: int) -> str:
    """The order's local calendar day as an integer (days since 1970-01-01 in the business's zone)."""
    if vendor == "postgresql":
        return f"CAST(FLOOR((EXTRACT(EPOCH FROM o.ordered_at) + {offset_seconds}) / 86400) AS INTEGER)"
    # SQLite keeps UTC text; strftime('%s') reads it as seconds since the epoch ('%%': the query
    # has parameters, so a bare percent sign would be taken for a placeholder).
    return f"((CAST(strftime('%%s', o.ordered_at) AS INTEGER) + {offset_seconds}) / 86400)"


def _utc_offset_seconds(as_of: dt.date) -> int:
    # One offset for the whole history: exact for zones without daylight saving (Asia/Shanghai);
    # elsewhere an order within an hour of midnight on a DST day may land on the next day.
    zone = ZoneInfo(settings.TIME_ZONE)
    offset = dt.datetime.combine(as_of, dt.time(12), tzinfo=zone).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


def _end_of_day(as_of: dt.date) -> dt.datetime:
    zone = ZoneInfo(settings.TIME_ZONE)
    return dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time(), tzinfo=zone)


def pairs_query(as_of: dt.date, *, customer_range: tuple[int, int] | None = None) -> tuple[str, list[Any]]:
    """The SQL (and parameters) of the distinct purchase pairs up to the end of ``as_of``.

    ``customer_range`` (first id, id after the last) narrows it to a slice of customers.
    """
    quote = connection.ops.quote_name
    day = _day_expression(connection.vendor, _utc_offset_seconds(as_of))
    params: list[Any] = [_end_of_day(as_of)]
    narrowed = ""
    if customer_range is not None:
        narrowed = "AND o.customer_id >= %s AND o.customer_id < %s "
        params += list(customer_range)
    # Table names come from the models, never from input.
    sql = (
        f"SELECT o.customer_id, l.product_id, MIN({day}), MAX({day}) "  # noqa: S608
        f"FROM {quote(OrderLine._meta.db_table)} l "
        f"JOIN {quote(Order._meta.db_table)} o ON o.id = l.order_id "
        "WHERE l.product_id IS NOT NULL AND l.refunded_quantity < l.quantity "
        # A fully refunded order gave everything back; the condition reads the covering index
        # (customer, ordered_at, total_fen, refunded_fen) instead of the order's row.
        f"AND (o.refunded_fen < o.total_fen OR o.total_fen = 0) AND o.ordered_at < %s {narrowed}"
        "GROUP BY o.customer_id, l.product_id"
    )
    return sql, params


def _queries(as_of: dt.date) -> Iterator[tuple[str, list[Any]]]:
    if connection.vendor != "sqlite":
        # PostgreSQL aggregates in its own memory (work_mem, spilling to disk) and would scan
        # the lines once per slice: one query.
        yield pairs_query(as_of)
        return
    # SQLite walks orders by the customer index and keeps the GROUP BY's temporary B-tree in
    # memory (temp_store=MEMORY): slices of customers bound that memory.
    bounds = Order.objects.aggregate(low=Min("customer_id"), high=Max("customer_id"))
    if bounds["low"] is None:
        return
    for low in range(bounds["low"], bounds["high"] + 1, CUSTOMER_SLICE):
        yield pairs_query(as_of, customer_range=(low, low + CUSTOMER_SLICE))


def _fetch_chunks(sql: str, params: list[Any]) -> Iterator[IntArray]:
    # A server-side cursor on PostgreSQL, so the rows stream instead of arriving all at once.
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(FETCH_ROWS):
            chunk = np.array(rows, dtype=np.int64).reshape(-1, 4)
            # Half the memory while the whole table is gathered, when the ids allow it.
            yield chunk.astype(np.int32) if chunk.max(initial=0) < INT32_MAX else chunk


def pairs_load(as_of: dt.date) -> Pairs:
    """Read the purchase pairs into compact NumPy arrays (customer and product indexes)."""
    # Inside a transaction: PostgreSQL keeps a named cursor only within one.
    with transaction.atomic():
        chunks = [chunk for sql, params in _queries(as_of) for chunk in _fetch_chunks(sql, params)]
    table = np.concatenate(chunks) if chunks else np.zeros((0, 4), dtype=np.int64)
    del chunks
    customer_ids, customer = np.unique(table[:, 0], return_inverse=True)
    product_ids, product = np.unique(table[:, 1], return_inverse=True)
    # 32-bit indexes and days: 16 bytes per distinct pair (1M customers, 10M lines: ~120 MB).
    return Pairs(
        customer=customer.astype(np.int32),
        product=product.astype(np.int32),
        first_day=table[:, 2].astype(np.int32),
        last_day=table[:, 3].astype(np.int32),
        customer_ids=customer_ids.astype(np.int64),
        product_ids=product_ids.astype(np.int64),
    )


# --- the model ------------------------------------------------------------------------------------
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


# --- recommending (vectorised over a chunk of customers) -------------------------------------------
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


# --- the service ----------------------------------------------------------------------------------
def _refusal(pairs: Pairs, recommendable: np.ndarray[Any, np.dtype[np.bool_]]) -> str:
    if pairs.customers < MIN_CUSTOMERS:
        return _(
            "Too few customers with purchases to recommend products: %(count)s, at least %(minimum)s are needed."
        ) % {"count": pairs.customers, "minimum": MIN_CUSTOMERS}
    if int(recommendable.sum()) < MIN_PRODUCTS:
        return _(
            "Too few products on sale have been bought to recommend any: %(count)s, at least %(minimum)s are needed."
        ) % {"count": int(recommendable.sum()), "minimum": MIN_PRODUCTS}
    co_purchasers = int((np.bincount(pairs.customer, minlength=pairs.customers) >= 2).sum())
    if co_purchasers < MIN_CO_PURCHASERS:
        return _(
            "Too few customers bought more than one product to learn what goes together: %(count)s, "
            "at least %(minimum)s are needed."
        ) % {"count": co_purchasers, "minimum": MIN_CO_PURCHASERS}
    return ""


def _write_affinities(pairs: Pairs, affinity: Affinity) -> int:
    """Replace every ProductAffinity row with the new set (the caller holds the transaction)."""
    ProductAffinity.objects.all().delete()
    rows = list(
        zip(
            pairs.product_ids[affinity.product].tolist(),
            pairs.product_ids[affinity.related].tolist(),
            affinity.together.tolist(),
            affinity.score.tolist(),
            strict=True,
        )
    )
    table = connection.ops.quote_name(ProductAffinity._meta.db_table)
    columns = "product_id, related_id, together, score"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            for start in range(0, len(rows), 20_000):
                # Table and column names come from the model, never from input.
                cursor.executemany(
                    f"INSERT INTO {table} ({columns}) VALUES (%s, %s, %s, %s)",  # noqa: S608
                    rows[start : start + 20_000],
                )
    return len(rows)


def _record(
    *,
    status: str,
    as_of: dt.date,
    started: float,
    actor: User | None,
    customers: int = 0,
    parameters: dict[str, Any] | None = None,
    evaluation: dict[str, Any] | None = None,
    report: dict[str, Any] | None = None,
    message: str = "",
) -> ModelFit:
    fit = ModelFit.objects.create(
        kind=FitKind.RECOMMENDATIONS,
        status=status,
        as_of=as_of,
        duration_ms=int((time.perf_counter() - started) * 1000),
        customers=customers,
        parameters=parameters or {},
        evaluation=evaluation or {},
        report=report or {},
        message=message,
        started_by=actor,
    )
    audit_record(
        actor=actor,
        action="analytics.recommendations_build",
        target=fit,
        after={
            "status": status,
            "as_of": as_of.isoformat(),
            "message": message,
            **(evaluation or {}).get("summary", {}),
        },
    )
    return fit


def build_options_check(*, as_of: dt.date | None, similarity_name: str) -> dt.date:
    """The as-of date to build for (today by default), refusing a future date or unknown similarity.

    Callers that queue the build check first, so a bad request is refused at once (422).
    """
    if similarity_name not in SIMILARITIES:
        raise ValidationFailed.for_field(
            "similarity", _("Choose one of: %(choices)s.") % {"choices": ", ".join(SIMILARITIES)}
        )
    today = timezone.localdate()
    if as_of is not None and as_of > today:
        raise ValidationFailed.for_field("as_of", _("The date cannot be in the future."))
    return as_of or today


def recommendations_build(
    *,
    as_of: dt.date | None = None,
    actor: User | None = None,
    progress: Progress | None = None,
    similarity_name: str = DEFAULT_SIMILARITY,
    compare: bool = True,
) -> ModelFit:
    """Rebuild the "also bought" table from the purchases up to ``as_of`` and evaluate it.

    Returns the recorded :class:`ModelFit`: SUCCEEDED with precision@5 and recall@5 against
    popularity, or REFUSED (nothing replaced) when the data cannot support the model. The
    previous ProductAffinity set is replaced in one transaction, so readers see the old set or
    the new one, never a mixture.
    """
    ensure_permitted(actor, "analytics.change")
    as_of = build_options_check(as_of=as_of, similarity_name=similarity_name)
    started = time.perf_counter()
    try:
        return _build(
            as_of=as_of,
            actor=actor,
            progress=progress,
            similarity_name=similarity_name,
            compare=compare,
            started=started,
        )
    except Exception as error:
        # Recorded outside the failed transaction, so the report page says what happened.
        _record(status=FitStatus.FAILED, as_of=as_of, started=started, actor=actor, message=str(error)[:2000])
        raise


def _build(
    *,
    as_of: dt.date,
    actor: User | None,
    progress: Progress | None,
    similarity_name: str,
    compare: bool,
    started: float,
) -> ModelFit:
    step = progress or (lambda phase, done, total: None)
    step("read", 0, 1)
    pairs = pairs_load(as_of)
    step("read", 1, 1)
    active = set(Product.objects.filter(is_active=True).values_list("pk", flat=True))
    recommendable = np.isin(pairs.product_ids, np.fromiter(active, dtype=np.int64, count=len(active)))
    parameters: dict[str, Any] = {
        "top_k": TOP_K,
        "similarity": similarity_name,
        "min_support": MIN_SUPPORT,
        "at": AT,
        "customers": pairs.customers,
        "products": pairs.products,
        "products_on_sale": int(recommendable.sum()),
        "pairs": len(pairs.customer),
    }
    refusal = _refusal(pairs, recommendable)
    if refusal:
        return _record(
            status=FitStatus.REFUSED,
            as_of=as_of,
            started=started,
            actor=actor,
            customers=pairs.customers,
            parameters=parameters,
            message=refusal,
        )
    step("fit", 0, 1)
    full = purchase_matrix(pairs.customer, pairs.product, (pairs.customers, pairs.products))
    affinity = affinity_fit(cooccurrence(full, recommendable=recommendable), method=similarity_name)
    popular = popularity_order(full, recommendable)[:POPULAR_KEPT]
    buyers = np.asarray(full.sum(axis=0)).ravel()
    step("fit", 1, 1)
    methods = tuple(dict.fromkeys((similarity_name, *(SIMILARITIES if compare else ()))))
    evaluation = holdout_evaluate(pairs, recommendable=recommendable, methods=methods, progress=progress)
    if "methods" in evaluation:
        chosen, baseline = evaluation["methods"][similarity_name], evaluation["methods"]["popularity"]
        evaluation["summary"] = {
            "precision_at_5": chosen["precision_at_5"],
            "recall_at_5": chosen["recall_at_5"],
            "baseline_precision_at_5": baseline["precision_at_5"],
            "baseline_recall_at_5": baseline["recall_at_5"],
        }
    parameters["pairs_kept"] = len(affinity.product)
    parameters["products_with_related"] = len(np.unique(affinity.product))
    report = {
        # [product id, customers who bought it]: the fallback for customers who hold nothing.
        "popular": [[int(pairs.product_ids[index]), int(buyers[index])] for index in popular],
    }
    step("write", 0, 1)
    with transaction.atomic():
        _write_affinities(pairs, affinity)
        fit = _record(
            status=FitStatus.SUCCEEDED,
            as_of=as_of,
            started=started,
            actor=actor,
            customers=pairs.customers,
            parameters=parameters,
            evaluation=evaluation,
            report=report,
        )
    step("write", 1, 1)
    return fit


def lift_over_baseline(evaluation: dict[str, Any]) -> float | None:
    """How many times the model's precision@5 is the popularity baseline's (None if unknown)."""
    summary = evaluation.get("summary") or {}
    model, baseline = summary.get("precision_at_5"), summary.get("baseline_precision_at_5")
    if model is None or not baseline:
        return None
    return round(model / baseline, 2) if math.isfinite(model / baseline) else None
