"""``{% recommendations_report as report %}``: the recommendation report for pages that include
the panel without preparing it (the models page)."""

from __future__ import annotations

from typing import Any

from django import template

from kehu.analytics.selectors_recommendations import recommendations_report

register = template.Library()


@register.simple_tag
def recommendation_report() -> dict[str, Any]:
    return recommendations_report()
