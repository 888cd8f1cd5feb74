"""Domain signals of the accounts app, sent after the transaction commits."""

from django.dispatch import Signal

user_deactivated = Signal()  # kwargs: user_id
