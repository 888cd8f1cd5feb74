"""Dashboard subscriptions to other apps' domain signals (connected in AnalyticsConfig.ready).

The signals are sent after commit; each receiver queues a small job that adds the order's
(refund's, card's, customer's) share to today's DailyStats row, so the dashboard's "today"
moves with the till. The nightly rebuild recomputes everything, so a lost job only delays.
"""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from kehu.analytics import jobs_dashboards
from kehu.commerce.signals import order_refunded, purchase_recorded
from kehu.customers.signals import customer_created
from kehu.loyalty.signals import card_issued


@receiver(purchase_recorded, dispatch_uid="analytics.dashboards.purchase")
def on_purchase_recorded(sender: Any, *, order_id: int, **kwargs: Any) -> None:
    jobs_dashboards.dashboard_purchase_task(order_id)


@receiver(order_refunded, dispatch_uid="analytics.dashboards.refund")
def on_order_refunded(sender: Any, *, refund_id: int, **kwargs: Any) -> None:
    jobs_dashboards.dashboard_refund_task(refund_id)


@receiver(card_issued, dispatch_uid="analytics.dashboards.card")
def on_card_issued(sender: Any, *, card_id: int, **kwargs: Any) -> None:
    jobs_dashboards.dashboard_card_issued_task(card_id)


@receiver(customer_created, dispatch_uid="analytics.dashboards.customer")
def on_customer_created(sender: Any, *, customer_id: int, **kwargs: Any) -> None:
    jobs_dashboards.dashboard_customer_created_task(customer_id)
