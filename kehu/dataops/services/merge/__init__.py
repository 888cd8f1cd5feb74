"""Review and merge of duplicate customers: preview, merge N into one, undo, auto-merge.

The package, by job:

- ``fields``: the fields a merge chooses between and the contact lists it unites;
- ``cards``: what happens to each card (combined by ``merge`` ledger entries, or moved);
- ``preview``: ``merge_preview`` for the compare page and the API;
- ``apply``: ``customers_merge``, one transaction, with the snapshot undo reads;
- ``undo``: ``merge_undo``, exact or refused;
- ``auto``: ``auto_merge`` above a threshold when nothing conflicts, ``pair_dismiss``;
- ``selectors``: the review queue and the merge history in the user's scope.
"""

from kehu.dataops.services.merge._common import (
    AUTO_MERGE_THRESHOLD,
    MAX_MERGE_CUSTOMERS,
    PERMISSION_CHANGE,
    PERMISSION_VIEW,
    MergeRefused,
    UndoRefused,
    auto_merge_threshold,
    visible_customers,
)
from kehu.dataops.services.merge.apply import customers_merge
from kehu.dataops.services.merge.auto import auto_merge, auto_merge_conflicts, pair_dismiss
from kehu.dataops.services.merge.preview import MergePreview, merge_preview
from kehu.dataops.services.merge.undo import merge_undo

__all__ = [
    "AUTO_MERGE_THRESHOLD",
    "MAX_MERGE_CUSTOMERS",
    "PERMISSION_CHANGE",
    "PERMISSION_VIEW",
    "MergePreview",
    "MergeRefused",
    "UndoRefused",
    "auto_merge",
    "auto_merge_conflicts",
    "auto_merge_threshold",
    "customers_merge",
    "merge_preview",
    "merge_undo",
    "pair_dismiss",
    "visible_customers",
]
