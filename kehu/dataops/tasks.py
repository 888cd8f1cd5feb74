"""The data-operations app's Huey tasks: each area keeps its own in ``jobs_<area>.py``.

Importing them here is what lets the consumer (which autodiscovers ``tasks`` modules) find them.
"""

from kehu.dataops import jobs_dedup, jobs_exports, jobs_imports, jobs_merges

__all__ = ["jobs_dedup", "jobs_exports", "jobs_imports", "jobs_merges"]
