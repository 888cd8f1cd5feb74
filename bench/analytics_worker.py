"""The processes of the analytics benchmark (bench/scenarios/analytics.py); each prints one JSON object.

    python -m bench.analytics_worker refresh ROUNDS
    python -m bench.analytics_worker fit clv|churn|recommendations
    python -m bench.analytics_worker segment CALLS
    python -m bench.analytics_worker dashboard CALLS
    python -m bench.analytics_worker incremental ORDERS

run with DJANGO_SETTINGS_MODULE=bench.settings and KEHU_DATA_DIR / KEHU_DATABASE_URL of the
analytics dataset (bench.analytics_dataset). A service that does not exist (yet) gives
``{"missing": "<reason>"}`` instead of figures. Every timing pairs the thing with its floor in
the same process, on the same connection, alternating.

``fit`` runs in a process of its own so that its peak RSS (``ru_maxrss``) is the fit's: it
reports the peak before the fit (Django and the imports) and after it; the floor query runs after
the fit, streamed, so that it does not raise the peak.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import resource
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

ORDER_FLOOR_SQL = (
    "SELECT customer_id, COUNT(*), SUM(total_fen), MAX(ordered_at) FROM commerce_order GROUP BY customer_id"
)
# What a co-occurrence model must read at least: every customer's distinct products.
PAIRS_FLOOR_SQL = (
    "SELECT o.customer_id, l.product_id FROM commerce_orderline l JOIN commerce_order o ON o.id = l.order_id "
    "WHERE l.product_id IS NOT NULL GROUP BY o.customer_id, l.product_id"
)


def _django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()


def _emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload, default=str) + "\n")
    sys.stdout.flush()


def _log(message: str) -> None:
    print(f"    {message}", file=sys.stderr, flush=True)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _service(module: str, name: str) -> tuple[Callable[..., Any] | None, str]:
    """The function, or None and why not."""
    try:
        loaded = importlib.import_module(module)
    except ImportError as error:
        return None, f"{module} cannot be imported ({error})"
    function = getattr(loaded, name, None)
    if function is None:
        return None, f"{module}.{name} does not exist yet"
    return function, ""


def _read_all(sql: str, params: list[Any] | None = None) -> int:
    """Run ``sql`` and read every row (streamed, 10,000 at a time); returns the row count."""
    from django.db import connection

    rows = 0
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        while batch := cursor.fetchmany(10_000):
            rows += len(batch)
    return rows


def _timed(function: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = function()
    return time.perf_counter() - started, value


def _in_a_thread(function: Callable[[], Any]) -> Callable[[], Any]:
    """``function`` run in a thread of its own and waited for, as the job consumer runs the nightly
    refresh: with another thread alive, the refresh starts its SQLite workers afresh instead of
    forking them (kehu.analytics.services.metrics_workers.start_method), as it does in production."""

    def run() -> Any:
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(function).result()

    return run


def _admin() -> Any:
    from kehu.accounts.models import User

    return User.objects.get(username="bench-admin")


# --- full refresh -----------------------------------------------------------------------------------
def _run_summary(run: Any) -> dict[str, Any]:
    details = getattr(run, "details", None) or {}
    return {
        "status": str(getattr(run, "status", "")),
        "as_of": str(getattr(run, "as_of", "")),
        "customers": getattr(run, "customers", None),
        "buyers": getattr(run, "buyers", None),
        "write": details.get("write"),
        "rows_written": details.get("rows_written"),
        "worker_processes": details.get("worker_processes"),
        "worker_start": details.get("worker_start"),
        "database_sessions": details.get("database_sessions"),
        "active_within_days": getattr(run, "active_within_days", None),
        "dormant_after_days": getattr(run, "dormant_after_days", None),
        "seconds": details.get("seconds"),
        "error": getattr(run, "error", ""),
    }


def refresh(rounds: int) -> dict[str, Any]:
    """A first refresh into an empty table, then ``rounds`` nights: each refresh one day later
    than the one before (the day's orders come in, every customer's recency moves), each beside
    a floor read."""
    refresh_full, why = _service("kehu.analytics.services.metrics", "metrics_refresh_full")
    if refresh_full is None:
        return {"missing": why}
    import datetime as dt

    from kehu.analytics.models import CustomerMetrics
    from kehu.analytics.services.metrics import business_today
    from kehu.commerce.models import Order

    today = business_today()
    CustomerMetrics.objects.all().delete()
    first_floor, groups = _timed(lambda: _read_all(ORDER_FLOOR_SQL))
    first_s, first_run = _timed(_in_a_thread(lambda: refresh_full(as_of=today - dt.timedelta(days=rounds))))
    _log(f"first refresh (empty table): {first_s:.2f} s; floor {first_floor:.2f} s")
    thing: list[float] = []
    floor: list[float] = []
    runs: list[dict[str, Any]] = []
    for number in range(rounds):
        as_of = today - dt.timedelta(days=rounds - number - 1)
        order = ("floor", "thing") if number % 2 == 0 else ("thing", "floor")
        for side in order:
            if side == "floor":
                seconds, groups = _timed(lambda: _read_all(ORDER_FLOOR_SQL))
                floor.append(seconds)
            else:
                seconds, run = _timed(_in_a_thread(lambda day=as_of: refresh_full(as_of=day)))
                thing.append(seconds)
                runs.append(_run_summary(run))
            _log(f"refresh round {number + 1}/{rounds} {side}: {seconds:.2f} s")
    return {
        "first_s": first_s,
        "first_floor_s": first_floor,
        "first_run": _run_summary(first_run),
        "refresh_s": thing,
        "floor_s": floor,
        "orders": Order.objects.count(),
        "floor_groups": groups,
        "runs": runs,
        "run": runs[-1] if runs else {},
    }


# --- fits in their own process -----------------------------------------------------------------------
FITS = {
    "clv": ("kehu.analytics.services.clv", "clv_fit", ORDER_FLOOR_SQL),
    "churn": ("kehu.analytics.services.churn", "churn_train", ORDER_FLOOR_SQL),
    "recommendations": ("kehu.analytics.services.recommendations", "recommendations_build", PAIRS_FLOOR_SQL),
}


def fit(kind: str) -> dict[str, Any]:
    module, name, floor_sql = FITS[kind]
    function, why = _service(module, name)
    if function is None:
        return {"missing": why}
    from django.db import connection

    # Warm the connection and the imports, so that the peak before is the process's own baseline.
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    before = _peak_mb()
    seconds, result = _timed(lambda: function())
    peak = _peak_mb()
    floor_seconds, floor_rows = _timed(lambda: _read_all(floor_sql))
    return {
        "seconds": seconds,
        "rss_before_mb": before,
        "rss_peak_mb": peak,
        "floor_s": floor_seconds,
        "floor_rows": floor_rows,
        "status": str(getattr(result, "status", "")),
        "message": getattr(result, "message", ""),
        "customers": getattr(result, "customers", None),
        "parameters": getattr(result, "parameters", {}),
        "log_likelihood": getattr(result, "log_likelihood", None),
        "evaluation": getattr(result, "evaluation", {}),
        "duration_ms": getattr(result, "duration_ms", None),
    }


# --- segment count -----------------------------------------------------------------------------------
def _field_names(fields: Any) -> dict[str, Any]:
    """rule_fields() entries by their key, whatever their shape (dicts or objects)."""
    named: dict[str, Any] = {}
    for entry in fields:
        key = entry.get("field") or entry.get("key") or entry.get("name") if isinstance(entry, dict) else None
        if key is None:
            key = getattr(entry, "field", None) or getattr(entry, "key", None) or getattr(entry, "name", None)
        if key:
            named[str(key)] = entry
    return named


def segment_rules(clv_threshold: int) -> tuple[dict[str, Any], str, list[Any], str]:
    """The three-condition segment, the floor's SQL and parameters, and its description."""
    rfm = ["champions", "loyal", "potential_loyalist", "need_attention"]
    rules = {
        "op": "and",
        "rules": [
            {"field": "rfm_segment", "operator": "in", "value": rfm},
            {"field": "gender", "operator": "eq", "value": "female"},
            {"field": "clv", "operator": "gte", "value": f"{clv_threshold / 100:.2f}"},
        ],
    }
    floor_sql = (
        "SELECT COUNT(*) FROM customers_customer c JOIN analytics_customermetrics m ON m.customer_id = c.id "
        "WHERE m.rfm_segment IN (%s, %s, %s, %s) AND c.gender = %s AND m.clv_fen >= %s AND c.deleted_at IS NULL"
    )
    description = (
        f"RFM segment in ({', '.join(rfm)}) AND gender = female AND CLV ≥ {clv_threshold / 100:,.0f} yuan"
    )
    return rules, floor_sql, [*rfm, "female", clv_threshold], description


def segment(calls: int) -> dict[str, Any]:
    count, why = _service("kehu.marketing.selectors", "segment_count")
    if count is None:
        return {"missing": why}
    from django.db import connection

    from kehu.analytics.models import CustomerMetrics

    if not CustomerMetrics.objects.exists():
        return {"missing": "no customer metrics (the full refresh did not run)"}
    # The median CLV among customers with one (an OFFSET along the CLV index): about half of
    # them pass the third condition, on either database.
    with_clv = CustomerMetrics.objects.filter(clv_fen__isnull=False).order_by("clv_fen")
    total = with_clv.count()
    threshold = int(with_clv.values_list("clv_fen", flat=True)[total // 2]) if total else 0
    rules, floor_sql, params, description = segment_rules(threshold)
    override = os.environ.get("KEHU_BENCH_SEGMENT_RULES")
    if override:
        rules = json.loads(override)
    user = _admin()
    try:
        counted = count(user, rules)
    except Exception as error:  # noqa: BLE001 -- reported, not hidden: the rule format may differ
        return {"missing": f"segment_count refused the benchmark's rules {json.dumps(rules)}: {error!r}"}

    def floor() -> int:
        with connection.cursor() as cursor:
            cursor.execute(floor_sql, params)
            return int(cursor.fetchone()[0])

    expected = floor()
    thing_ms: list[float] = []
    floor_ms: list[float] = []
    for number in range(calls + 3):
        a, _value = _timed(lambda: count(user, rules))
        b, _value = _timed(floor)
        if number >= 3:  # warm-up
            thing_ms.append(a * 1000)
            floor_ms.append(b * 1000)
    return {
        "thing_ms": thing_ms,
        "floor_ms": floor_ms,
        "count": counted,
        "floor_count": expected,
        "rules": rules,
        "description": description,
        "clv_threshold_fen": threshold,
    }


# --- dashboard render ----------------------------------------------------------------------------------
def dashboard(calls: int) -> dict[str, Any]:
    rebuild, why = _service("kehu.analytics.services.dashboards", "dashboard_stats_rebuild")
    if rebuild is None:
        return {"missing": why}
    from django.test import Client
    from django.test.utils import override_settings
    from django.urls import NoReverseMatch, reverse

    try:
        path = reverse("analytics:dashboard")
    except NoReverseMatch:
        return {"missing": "the URL analytics:dashboard does not exist yet"}
    rebuild_seconds, _result = _timed(lambda: rebuild())
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(_admin())
    floor_path = "/"  # the home page (web:home)
    # Static URLs without the manifest (the benchmark collects no static files): the same for both.
    with override_settings(
        STORAGES={
            "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        }
    ):
        for target in (path, floor_path):
            response = client.get(target)
            if response.status_code != 200:
                return {"missing": f"GET {target} answered {response.status_code}"}
        size = len(client.get(path).content)
        thing_ms: list[float] = []
        floor_ms: list[float] = []
        for number in range(calls + 3):
            a, _r = _timed(lambda: client.get(path))
            b, _r = _timed(lambda: client.get(floor_path))
            if number >= 3:
                thing_ms.append(a * 1000)
                floor_ms.append(b * 1000)
    return {
        "thing_ms": thing_ms,
        "floor_ms": floor_ms,
        "path": path,
        "floor_path": floor_path,
        "bytes": size,
        "rebuild_s": rebuild_seconds,
    }


# --- incremental refresh after an order ----------------------------------------------------------------
def incremental(orders: int) -> dict[str, Any]:
    refresh_one, why = _service("kehu.analytics.services.metrics", "metrics_refresh_customers")
    if refresh_one is None:
        return {"missing": why}
    from django.db import connection

    from kehu.commerce.models import Order, OrderLine, OrderPayment, Product
    from kehu.commerce.services.orders import LineInput, PaymentInput, order_create
    from kehu.customers.models import Customer

    highest = Order.objects.order_by("-id").values_list("id", flat=True).first() or 0
    top = Customer.all_objects.order_by("-id").values_list("id", flat=True).first() or 0
    rng = random.Random(20261123)  # noqa: S311 -- sampling
    # Buyers without a card, so no ledger is written (nothing to undo but the orders).
    candidates = list(
        Customer.objects.filter(id__in=[rng.randint(1, top) for _ in range(orders * 6)], cards__isnull=True)
        .filter(orders__isnull=False)
        .distinct()
        .values_list("id", flat=True)
    )[: orders + 10]
    product = Product.objects.filter(sku__startswith="BENCH-").order_by("sku").first()
    if product is None or not candidates:
        return {"missing": "the dataset has no products or buyers without cards"}
    floor_sql = (
        "SELECT COUNT(*), SUM(total_fen - refunded_fen), MIN(ordered_at), MAX(ordered_at) "
        "FROM commerce_order WHERE customer_id = %s"
    )
    thing_ms: list[float] = []
    floor_ms: list[float] = []
    order_ms: list[float] = []
    try:
        for number, customer_id in enumerate(candidates):
            customer = Customer.objects.get(pk=customer_id)
            a, _result = _timed(
                lambda customer=customer: order_create(
                    actor=None,
                    customer=customer,
                    lines=[LineInput(product_id=product.pk, quantity=1)],
                    payments=[PaymentInput(method="cash", amount_fen=product.price_fen)],
                )
            )
            b, _count = _timed(lambda customer_id=customer_id: refresh_one([customer_id]))

            def floor(customer_id: int = customer_id) -> Any:
                with connection.cursor() as cursor:
                    cursor.execute(floor_sql, [customer_id])
                    return cursor.fetchone()

            c, _row = _timed(floor)
            if number >= 10:
                order_ms.append(a * 1000)
                thing_ms.append(b * 1000)
                floor_ms.append(c * 1000)
    finally:
        # The dataset is cached: take this run's orders out again (the next full refresh repairs
        # the metrics of these customers).
        added = Order.objects.filter(id__gt=highest)
        OrderLine.objects.filter(order__in=added).delete()
        OrderPayment.objects.filter(order__in=added).delete()
        added.delete()
    return {"thing_ms": thing_ms, "floor_ms": floor_ms, "order_ms": order_ms}


def percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main(arguments: list[str]) -> int:
    _django()
    mode = arguments[0]
    if mode == "refresh":
        _emit(refresh(int(arguments[1])))
    elif mode == "fit":
        _emit(fit(arguments[1]))
    elif mode == "segment":
        _emit(segment(int(arguments[1])))
    elif mode == "dashboard":
        _emit(dashboard(int(arguments[1])))
    elif mode == "incremental":
        _emit(incremental(int(arguments[1])))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
