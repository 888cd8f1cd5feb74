"""Huey discovers this module; the jobs live in one module per area."""

from kehu.analytics import jobs_dashboards, jobs_metrics, jobs_models, jobs_recommendations

__all__ = ["jobs_dashboards", "jobs_metrics", "jobs_models", "jobs_recommendations"]
