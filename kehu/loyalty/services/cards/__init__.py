"""Cards from issue to cancellation, and the ledger operations a clerk performs on them.

Every balance change goes through ``ledger.run_operation`` (idempotent by key, one conditional
UPDATE per movement); every status change locks the card row, checks the current status, and
writes the timeline event and the audit entry in the same transaction, so a refusal leaves
nothing behind. Signals go out after commit. Lock order, everywhere: card rows (by id) first,
then the audit chain head (``audit_record``), so two writers never wait on each other in a
circle.

The package, by sub-domain:

- ``_common``: errors, input checks, the row lock and status refusals, ``card_state`` and
  ``_record`` (timeline, audit, signal);
- ``numbers``: generated and typed card numbers (Luhn);
- ``issuing``: ``card_issue`` and the customer it finds or creates;
- ``balances``: top-up, spend, manual adjustment, points transfer;
- ``lifecycle``: freeze, unfreeze, report lost, replace, renew, upgrade, cancel;
- ``expiry``: the nightly expiry and reminder jobs.
"""

from kehu.loyalty.services.cards._common import (
    PAYMENT_METHODS,
    CardNumberTaken,
    CardStatusConflict,
    WrongCardKind,
    card_state,
)
from kehu.loyalty.services.cards.balances import card_spend, card_top_up, ledger_adjust, points_transfer
from kehu.loyalty.services.cards.expiry import (
    ALL_STATUSES,
    cards_expire_due,
    points_expire_due,
    points_expiry_remind,
)
from kehu.loyalty.services.cards.issuing import IssueResult, card_issue
from kehu.loyalty.services.cards.lifecycle import (
    CancelResult,
    card_cancel,
    card_freeze,
    card_renew,
    card_replace,
    card_report_lost,
    card_unfreeze,
    card_upgrade,
    refundable_stored_value,
)
from kehu.loyalty.services.cards.numbers import card_number_new, looks_like_ours, normalise_card_number

__all__ = [
    "ALL_STATUSES",
    "PAYMENT_METHODS",
    "CancelResult",
    "CardNumberTaken",
    "CardStatusConflict",
    "IssueResult",
    "WrongCardKind",
    "card_cancel",
    "card_freeze",
    "card_issue",
    "card_number_new",
    "card_renew",
    "card_replace",
    "card_report_lost",
    "card_spend",
    "card_state",
    "card_top_up",
    "card_unfreeze",
    "card_upgrade",
    "cards_expire_due",
    "ledger_adjust",
    "looks_like_ours",
    "normalise_card_number",
    "points_expire_due",
    "points_expiry_remind",
    "points_transfer",
    "refundable_stored_value",
]
