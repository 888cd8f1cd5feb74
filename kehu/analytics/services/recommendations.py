"""Product recommendations: item-to-item co-occurrence, evaluated on each customer's last purchase.

The method (docs/recommendations.md):

1. One SQL ``GROUP BY`` reads the distinct (customer, product) pairs that still count (the line
   not fully refunded, the order not fully refunded, ordered up to ``as_of``), with the first and
   last local day each pair was bought. Nothing else is read, and never one row per order line
   into Python objects: the rows stream into NumPy arrays a chunk at a time.
2. (kehu/analytics/services/recommendations_model.py) ``X`` is the sparse customer × product matrix (1 = bought); ``C = XᵀX`` counts the customers
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
from collections.abc import Iterator
from typing import Any, Final
from zoneinfo import ZoneInfo

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max, Min
from django.utils import timezone
from django.utils.translation import gettext as _

from kehu.accounts.models import User
from kehu.analytics.models import FitKind, FitStatus, ModelFit, ProductAffinity
from kehu.analytics.services.recommendations_model import (
    AT,
    MIN_SUPPORT,
    TOP_K,
    Affinity,
    IntArray,
    Pairs,
    Progress,
    affinity_fit,
    cooccurrence,
    holdout_evaluate,
    popularity_order,
    purchase_matrix,
)
from kehu.commerce.models import Order, OrderLine, Product
from kehu.core.audit import audit_record
from kehu.core.errors import ValidationFailed
from kehu.core.permissions import ensure_permitted

# Below these the model refuses to fit and says why.
MIN_CUSTOMERS: Final = 50
MIN_PRODUCTS: Final = 6  # 5 recommendations need at least one product more than a customer holds
MIN_CO_PURCHASERS: Final = 20  # customers with two or more different products
# Most popular products remembered with the fit: the fallback for customers who hold nothing.
POPULAR_KEPT: Final = 100
SIMILARITIES: Final = ("cosine", "jaccard", "lift", "conditional")
DEFAULT_SIMILARITY: Final = "cosine"
# Rows per fetch from the pairs query, and (customers × products) cells per scoring chunk.
FETCH_ROWS: Final = 100_000
INT32_MAX: Final = 2**31 - 1
# Customer ids per pairs query on SQLite.
CUSTOMER_SLICE: Final = 100_000


# --- the data -------------------------------------------------------------------------------------


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
