"""How far an import run is, for the progress bar (UI, CLI), from the job's checkpoint."""

from __future__ import annotations

from dataclasses import dataclass

from kehu.dataops.models import ImportJob


@dataclass(frozen=True)
class Progress:
    """How far a run is: for the progress bar (UI, CLI)."""

    rows_processed: int
    rows_total: int | None
    rows_per_second: float
    seconds_left: float | None

    @property
    def percent(self) -> int:
        if not self.rows_total:
            return 0
        return min(100, int(self.rows_processed * 100 / self.rows_total))


def job_progress(job: ImportJob) -> Progress:
    """Rate over this run (from ``options["run_from_row"]`` at ``started_at``) and time left."""
    rate = 0.0
    started_rows = int(job.options.get("run_from_row", 0))
    if job.started_at and job.heartbeat_at and job.heartbeat_at > job.started_at:
        seconds = (job.heartbeat_at - job.started_at).total_seconds()
        rate = max(0, job.rows_processed - started_rows) / seconds if seconds > 0 else 0.0
    left = None
    if job.rows_total is not None and rate > 0:
        left = max(0, job.rows_total - job.rows_processed) / rate
    return Progress(job.rows_processed, job.rows_total, rate, left)
