"""The churn fit: a histogram gradient-boosting classifier on RFM and behaviour features,
trained on one time window and back-tested (AUC) on the next; then retrained on the later window
and used to score every buyer's churn risk. What both fits share is in
:mod:`kehu.analytics.services.models`.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from django.db import connection, transaction
from django.db.models import Count
from django.utils.translation import gettext as _

from kehu.accounts.models import User
from kehu.analytics.models import FitKind, FitStatus, ModelFit
from kehu.analytics.selectors_models import latest_fit
from kehu.analytics.services import clvmath
from kehu.analytics.services.models import (
    MIN_CUSTOMERS,
    FloatArray,
    IntArray,
    Progress,
    Refused,
    aligned_to,
    analytics_settings,
    as_days,
    daily_purchases_sql,
    day_end,
    day_param,
    days_since,
    failure_recorded,
    future_note,
    future_orders,
    model_fit_check,
    purchase_days_between,
    record_refusal,
    report_progress,
    save_fit,
    write_scores,
)
from kehu.loyalty.models import Card, LedgerEntry, LedgerKind

FEATURES = (
    "recency_days",
    "purchase_days",
    "monetary_fen",
    "average_order_fen",
    "tenure_days",
    "purchase_days_90",
    "purchase_days_180",
    "refund_share",
    "cards",
    "points_balance",
    "stored_value_fen",
    "p_alive",
)


CLASSIFIER_SETTINGS: dict[str, Any] = {
    "max_iter": 200,
    "learning_rate": 0.05,
    "max_leaf_nodes": 15,
    "l2_regularization": 1.0,
    "random_state": 0,
}


@dataclass(frozen=True)
class Features:
    customer_ids: IntArray
    matrix: FloatArray  # one column per FEATURES entry

    @property
    def size(self) -> int:
        return int(self.customer_ids.size)


def churn_features(cutoff: dt.date, *, purchases: clvmath.BgNbdParams | None = None) -> Features:
    """Every buyer's features as they stood at the end of ``cutoff`` (nothing later is read).

    Purchase figures come from one aggregate over the daily purchase rows; cards from those
    issued by then; points and stored value from each card's last ledger entry by then.
    """
    inner, params = daily_purchases_sql(start=None, end=day_end(cutoff))
    sql = f"""
        SELECT d.customer_id,
               SUM(CASE WHEN d.net > 0 THEN 1 ELSE 0 END),
               MIN(CASE WHEN d.net > 0 THEN d.day END),
               MAX(CASE WHEN d.net > 0 THEN d.day END),
               SUM(d.net), SUM(d.counted), SUM(d.gross), SUM(d.refunded),
               SUM(CASE WHEN d.net > 0 AND d.day > %s THEN 1 ELSE 0 END),
               SUM(CASE WHEN d.net > 0 AND d.day > %s THEN 1 ELSE 0 END)
        FROM ({inner}) d
        GROUP BY d.customer_id
        HAVING SUM(CASE WHEN d.net > 0 THEN 1 ELSE 0 END) > 0
        ORDER BY d.customer_id
    """  # noqa: S608 -- the ORM's SQL, parameters apart
    windows = [day_param(cutoff - dt.timedelta(days=90)), day_param(cutoff - dt.timedelta(days=180))]
    with connection.cursor() as cursor:
        # The window parameters come first in the statement, before the inner query's.
        cursor.execute(sql, [*windows, *params])
        rows = cursor.fetchall()
    if not rows:
        return Features(np.zeros(0, dtype=np.int64), np.zeros((0, len(FEATURES))))
    ids, days, firsts, lasts, net, counted, gross, refunded, days_90, days_180 = (
        np.asarray(column) for column in zip(*rows, strict=True)
    )
    customer_ids = ids.astype(np.int64)
    first_day, last_day = as_days(list(firsts)), as_days(list(lasts))
    days_f = days.astype(np.float64)
    net_f = net.astype(np.float64)
    gross_f = gross.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        average = np.where(counted > 0, net_f / np.maximum(counted.astype(np.float64), 1.0), 0.0)
        refund_share = np.where(gross_f > 0, refunded.astype(np.float64) / gross_f, 0.0)
    tenure = days_since(cutoff, first_day)
    recency = days_since(cutoff, last_day)
    alive = np.full(customer_ids.size, np.nan)
    if purchases is not None:
        alive = clvmath.bgnbd_p_alive(purchases, days_f - 1.0, tenure - recency, tenure)
    cards = aligned_to(customer_ids, _cards_by(cutoff))
    points, stored = _balances_by(cutoff)
    matrix = np.column_stack(
        [
            recency,
            days_f,
            net_f,
            average,
            tenure,
            days_90.astype(np.float64),
            days_180.astype(np.float64),
            refund_share,
            cards,
            aligned_to(customer_ids, points),
            aligned_to(customer_ids, stored),
            alive,
        ]
    )
    return Features(customer_ids, matrix)


def _cards_by(cutoff: dt.date) -> dict[int, int]:
    rows = (
        Card.objects.filter(issued_at__lt=day_end(cutoff))
        .values("customer_id")
        .annotate(cards=Count("id"))
        .order_by()
        .values_list("customer_id", "cards")
    )
    return {int(customer): int(cards) for customer, cards in rows}


def _balances_by(cutoff: dt.date) -> tuple[dict[int, int], dict[int, int]]:
    """Points and stored value per customer: each card's last balance by the end of ``cutoff``."""
    entries = connection.ops.quote_name(LedgerEntry._meta.db_table)
    cards = connection.ops.quote_name(Card._meta.db_table)
    sql = f"""
        SELECT c.customer_id,
               SUM(CASE WHEN e.kind = %s THEN e.balance_after ELSE 0 END),
               SUM(CASE WHEN e.kind = %s THEN e.balance_after ELSE 0 END)
        FROM (
            SELECT card_id, kind, balance_after,
                   ROW_NUMBER() OVER (PARTITION BY card_id, kind ORDER BY created_at DESC, id DESC) AS position
            FROM {entries}
            WHERE created_at < %s AND kind IN (%s, %s)
        ) e
        JOIN {cards} c ON c.id = e.card_id
        WHERE e.position = 1
        GROUP BY c.customer_id
    """  # noqa: S608 -- table names from the models
    end = connection.ops.adapt_datetimefield_value(day_end(cutoff))
    kinds = [LedgerKind.POINTS.value, LedgerKind.STORED_VALUE.value]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*kinds, end, *kinds])
        rows = cursor.fetchall()
    points = {int(customer): int(value or 0) for customer, value, _stored in rows}
    stored = {int(customer): int(value or 0) for customer, _points, value in rows}
    return points, stored


def churn_labels(features: Features, cutoff: dt.date, horizon_days: int) -> npt.NDArray[np.int64]:
    """1 for a customer who bought nothing in (cutoff, cutoff + horizon], else 0."""
    bought = purchase_days_between(cutoff, cutoff + dt.timedelta(days=horizon_days))
    result: npt.NDArray[np.int64] = (aligned_to(features.customer_ids, bought) == 0).astype(np.int64)
    return result


def _check_window(features: Features, labels: npt.NDArray[np.int64] | None, cutoff: dt.date) -> None:
    if features.size < MIN_CUSTOMERS:
        raise Refused(
            "too_few_customers_window", count=features.size, date=cutoff.isoformat(), minimum=MIN_CUSTOMERS
        )
    if labels is not None and np.unique(labels).size < 2:
        outcome = "churned" if labels[0] == 1 else "bought_again"
        raise Refused("single_class", date=cutoff.isoformat(), outcome=outcome)


def _classifier() -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(**CLASSIFIER_SETTINGS)


# Below this many rows the boosting's OpenMP threads cost more than they save: on a busy
# two-core machine their spin-waits made a 600-customer fit take a minute instead of a second.
THREADED_FROM_ROWS = 100_000


def _threads(rows: int) -> Any:
    # scikit-learn's OpenMP runtime must be loaded before its threads can be limited.
    import sklearn.ensemble  # noqa: F401
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]  # ships no type information

    return threadpool_limits(limits=None if rows >= THREADED_FROM_ROWS else 1, user_api="openmp")


ROC_POINTS = 101


def _roc(labels: npt.NDArray[np.int64], scores: FloatArray) -> tuple[float, dict[str, list[float]]]:
    from sklearn.metrics import roc_auc_score, roc_curve

    auc = float(roc_auc_score(labels, scores))
    false_positive, true_positive, _thresholds = roc_curve(labels, scores)
    if false_positive.size > ROC_POINTS:
        picked = np.unique(np.linspace(0, false_positive.size - 1, ROC_POINTS).round().astype(int))
        false_positive, true_positive = false_positive[picked], true_positive[picked]
    return auc, {
        "fpr": [round(float(value), 4) for value in false_positive],
        "tpr": [round(float(value), 4) for value in true_positive],
    }


def churn_train(
    *, as_of: dt.date | None = None, actor: User | None = None, progress: Progress | None = None
) -> ModelFit:
    """Train the churn classifier on a time split, back-test it, and score every buyer.

    With horizon h (AnalyticsSettings.churn_horizon_days): train on features at as_of − 2h
    with labels from (as_of − 2h, as_of − h]; back-test on features at as_of − h with labels
    from (as_of − h, as_of] (AUC, ROC); then train on that later window and write each buyer's
    probability of no purchase within h days to ``CustomerMetrics.churn_risk``.
    Needs analytics.change. An unexpected error leaves a FAILED fit saying what went wrong.
    """
    as_of = model_fit_check(actor=actor, as_of=as_of)
    with failure_recorded(FitKind.CHURN, as_of=as_of, actor=actor):
        return _churn_train(as_of=as_of, actor=actor, progress=progress)


def _churn_train(*, as_of: dt.date, actor: User | None, progress: Progress | None) -> ModelFit:
    started = time.perf_counter()
    steps = 6
    horizon = int(analytics_settings().churn_horizon_days)
    train_cutoff = as_of - dt.timedelta(days=2 * horizon)
    test_cutoff = as_of - dt.timedelta(days=horizon)
    excluded = future_orders(as_of)
    notes = future_note(excluded)
    fit = ModelFit(kind=FitKind.CHURN, as_of=as_of, started_by=actor)
    clv = latest_fit(FitKind.CLV)
    purchases = clvmath.BgNbdParams(**clv.parameters["bgnbd"]) if clv and "bgnbd" in clv.parameters else None
    try:
        report_progress(progress, _("Features at the training cut-off"), 0, steps)
        train = churn_features(train_cutoff, purchases=purchases)
        if train.size == 0:
            raise Refused(
                "not_enough_history", date=train_cutoff.isoformat(), days=horizon, as_of=as_of.isoformat()
            )
        _check_window(train, None, train_cutoff)
        train_labels = churn_labels(train, train_cutoff, horizon)
        _check_window(train, train_labels, train_cutoff)
        report_progress(progress, _("Features at the back-test cut-off"), 1, steps)
        test = churn_features(test_cutoff, purchases=purchases)
        _check_window(test, None, test_cutoff)
        test_labels = churn_labels(test, test_cutoff, horizon)
        _check_window(test, test_labels, test_cutoff)
    except Refused as refusal:
        return record_refusal(fit, refusal, started, actor, notes=notes, excluded=excluded)
    # P(alive) is a feature only when a CLV fit exists (an all-empty column trains nothing).
    used = [index for index, name in enumerate(FEATURES) if name != "p_alive" or purchases is not None]
    report_progress(progress, _("Training on the earlier window"), 2, steps)
    with _threads(train.size):
        back_test_model = _classifier().fit(train.matrix[:, used], train_labels)
        report_progress(progress, _("Back-testing on the later window"), 3, steps)
        test_scores = back_test_model.predict_proba(test.matrix[:, used])[:, 1]
    auc, roc = _roc(test_labels, test_scores)
    # The same test scored by recency alone: what the classifier adds over "longest silent first".
    recency_auc, _recency_roc = _roc(test_labels, test.matrix[:, FEATURES.index("recency_days")])
    report_progress(progress, _("Training on the later window and scoring"), 4, steps)
    with _threads(test.size):
        final_model = _classifier().fit(test.matrix[:, used], test_labels)
    current = churn_features(as_of, purchases=purchases)
    with _threads(current.size):
        risk = final_model.predict_proba(current.matrix[:, used])[:, 1] if current.size else np.zeros(0)
    report_progress(progress, _("Writing customer metrics"), 5, steps)
    with transaction.atomic():
        written = write_scores(current.customer_ids, {"churn_risk": ("DOUBLE PRECISION", np.asarray(risk))})
        fit.status = FitStatus.SUCCEEDED
        fit.customers = current.size
        fit.parameters = {
            "classifier": "HistGradientBoostingClassifier",
            "settings": CLASSIFIER_SETTINGS,
            "features": [FEATURES[index] for index in used],
            "horizon_days": horizon,
            "uses_p_alive": purchases is not None,
        }
        fit.evaluation = {
            "auc": round(auc, 4),
            "auc_recency_only": round(recency_auc, 4),
            "train_cutoff": train_cutoff.isoformat(),
            "test_cutoff": test_cutoff.isoformat(),
            "train_customers": train.size,
            "test_customers": test.size,
            "train_churn_rate": round(float(np.mean(train_labels)), 4),
            "test_churn_rate": round(float(np.mean(test_labels)), 4),
            "future_orders_excluded": excluded,
            "metrics_written": written,
        }
        fit.report = {
            "roc": roc,
            "risk_histogram": np.histogram(risk, bins=10, range=(0.0, 1.0))[0].tolist(),
        }
        fit.message = notes
        save_fit(
            fit,
            started,
            actor,
            after={"status": fit.status, "customers": fit.customers, "auc": fit.evaluation["auc"]},
        )
    report_progress(progress, _("Done"), steps, steps)
    return fit
