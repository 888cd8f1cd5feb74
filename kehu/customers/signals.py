"""Domain signals of the customers app, sent after the transaction commits."""

from django.dispatch import Signal

customer_created = Signal()  # kwargs: customer_id
customer_updated = Signal()  # kwargs: customer_id, fields
customer_deleted = Signal()  # kwargs: customer_id
