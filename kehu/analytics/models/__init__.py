"""Analytics tables, one module per concern; everything is importable from here."""

from kehu.analytics.models.dashboards import CohortCell, DailyStats
from kehu.analytics.models.fits import FitKind, FitStatus, ModelFit
from kehu.analytics.models.metrics import (
    Activity,
    AnalyticsSettings,
    CustomerMetrics,
    Lifecycle,
    MetricsRun,
    RfmSegment,
    RunStatus,
    ValueTier,
)
from kehu.analytics.models.recommendations import ProductAffinity

__all__ = [
    "Activity",
    "AnalyticsSettings",
    "CohortCell",
    "CustomerMetrics",
    "DailyStats",
    "FitKind",
    "FitStatus",
    "Lifecycle",
    "MetricsRun",
    "ModelFit",
    "ProductAffinity",
    "RfmSegment",
    "RunStatus",
    "ValueTier",
]
