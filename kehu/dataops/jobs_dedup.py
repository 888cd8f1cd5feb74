"""Huey tasks for dedup: thin wrappers over kehu.dataops.services.dedup."""

from __future__ import annotations

from huey.contrib.djhuey import db_task

from kehu.dataops.models import DedupScan, ScanStatus
from kehu.dataops.services.dedup.scan import scan_run


@db_task()  # type: ignore[untyped-decorator]  # huey's decorators are untyped
def dedup_scan_job(scan_id: int) -> int:
    """Run a scan recorded by scan_start; a scan that is no longer running is left alone."""
    scan = DedupScan.objects.filter(pk=scan_id, status=ScanStatus.RUNNING).first()
    if scan is None:
        return 0
    return scan_run(scan).pairs_found
