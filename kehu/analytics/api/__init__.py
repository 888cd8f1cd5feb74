"""The analytics API: one router per area, mounted together at /api/v1/analytics."""

from ninja import Router

from kehu.analytics.api import dashboards, metrics, models, recommendations

router = Router()
router.add_router("/analytics", metrics.router)
router.add_router("/analytics", models.router)
router.add_router("/analytics", dashboards.router)
router.add_router("/analytics", recommendations.router)
