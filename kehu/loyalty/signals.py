"""Domain signals of the loyalty app, sent after the transaction commits."""

from django.dispatch import Signal

card_issued = Signal()  # kwargs: card_id, customer_id
card_status_changed = Signal()  # kwargs: card_id, customer_id, old_status, new_status
ledger_changed = Signal()  # kwargs: operation_id, card_ids
tier_changed = Signal()  # kwargs: card_id, customer_id, from_tier, to_tier, cause
points_expiring = Signal()  # kwargs: card_id, customer_id, points, expires_at
coupon_issued = Signal()  # kwargs: coupon_ids
coupon_redeemed = Signal()  # kwargs: coupon_id, reference
