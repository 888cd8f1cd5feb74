"""Duplicate detection: blocking, scoring, the scan, suggestions while typing, evaluation.

Import from the submodules; this package re-exports the names other areas use.
"""

from kehu.dataops.services.dedup.scan import (
    AUTO_MERGE_THRESHOLD,
    DEDUP_THRESHOLD,
    auto_merge_threshold,
    dedup_threshold,
    scan_run,
    scan_start,
)
from kehu.dataops.services.dedup.scoring import Profile, score_pair
from kehu.dataops.services.dedup.suggest import Suggestion, likely_duplicates

__all__ = [
    "AUTO_MERGE_THRESHOLD",
    "DEDUP_THRESHOLD",
    "Profile",
    "Suggestion",
    "auto_merge_threshold",
    "dedup_threshold",
    "likely_duplicates",
    "scan_run",
    "scan_start",
    "score_pair",
]
