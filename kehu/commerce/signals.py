"""Domain signals of the commerce app, sent after the transaction commits."""

from django.dispatch import Signal

purchase_recorded = Signal()  # kwargs: order_id, customer_id, card_id
order_refunded = Signal()  # kwargs: order_id, refund_id, customer_id, card_id
