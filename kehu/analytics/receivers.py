"""Subscriptions to other apps' domain signals (connected in AnalyticsConfig.ready).

A recorded purchase or a refund queues the customer's metrics refresh. The signals are sent
after the order's transaction commits, so the job reads the committed order; with the queue in
immediate mode (tests, ``KEHU_QUEUE_IMMEDIATE``) it runs at once.
"""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from kehu.commerce.signals import order_refunded, purchase_recorded


@receiver(purchase_recorded, dispatch_uid="analytics.metrics.purchase_recorded")
@receiver(order_refunded, dispatch_uid="analytics.metrics.order_refunded")
def queue_customer_metrics(sender: Any, customer_id: int, **kwargs: Any) -> None:
    from kehu.analytics.jobs_metrics import metrics_refresh_customer_job

    metrics_refresh_customer_job(customer_id)
