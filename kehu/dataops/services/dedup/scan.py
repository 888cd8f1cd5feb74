"""The duplicate scan over the whole database: block, score, write candidate pairs, cluster them.

A scan keeps what people decided: a pair already marked "not duplicates" (or merged) keeps its
status when it is found again, only its score and reasons are refreshed; an open pair that the
scan no longer finds (the records changed, or one was merged away) is removed from the queue.
Pairs that share a customer, transitively, form a cluster named by its smallest customer id,
so a person entered three times is reviewed and merged as one group.

Memory is flat in the number of customers: blocking runs in the database (see blocking.py),
pairs are scored a page at a time, and written with one upsert per page.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone
from django.utils.translation import gettext as _

from kehu.accounts.models import User
from kehu.core.audit import audit_record
from kehu.core.errors import Conflict, ValidationFailed
from kehu.core.permissions import ensure_permitted
from kehu.customers.models import Customer
from kehu.dataops.models import DedupScan, DuplicatePair, PairStatus, ScanStatus
from kehu.dataops.services.dedup.blocking import (
    DEFAULT_MAX_BLOCK,
    STREETS_TABLE,
    build_candidates,
    candidate_pages,
    create_tables,
    drop_tables,
)
from kehu.dataops.services.dedup.profiles import pairs_profiles
from kehu.dataops.services.dedup.scoring import reason_text, score_pair

# Defaults; the lead wires KEHU_DEDUP_THRESHOLD / KEHU_AUTO_MERGE_THRESHOLD into settings.
DEDUP_THRESHOLD: Final = 0.6
AUTO_MERGE_THRESHOLD: Final = 0.97
PAGE_SIZE: Final = 20_000
# A running scan that has reported no progress for this long is taken as dead (its process was
# killed); progress is reported at least once per city of addresses and per page of pairs.
STALE_SCAN_SECONDS: Final = 15 * 60


def dedup_threshold() -> float:
    """The score from which a pair is a candidate (settings.DEDUP_THRESHOLD, default 0.6, chosen with the labelled benchmark)."""
    return float(getattr(settings, "DEDUP_THRESHOLD", DEDUP_THRESHOLD))


def auto_merge_threshold() -> float:
    return float(getattr(settings, "AUTO_MERGE_THRESHOLD", AUTO_MERGE_THRESHOLD))


class ScanRunning(Conflict):
    code = "scan_running"


@dataclass(frozen=True, slots=True)
class ScanProgress:
    """``phase`` is "blocking:<kind>", "scoring" or "clustering"; ``done`` of ``total`` pairs."""

    phase: str
    done: int = 0
    total: int = 0
    found: int = 0


def _checked_threshold(threshold: float | None) -> float:
    value = dedup_threshold() if threshold is None else float(threshold)
    if not 0.0 < value <= 1.0:
        message = _("The threshold must be above 0 and at most 1.")
        raise ValidationFailed(message, fields={"threshold": [message]})
    return value


def scan_start(*, actor: User | None, threshold: float | None = None) -> DedupScan:
    """Record a new scan (status running); the caller runs it (:func:`scan_run`) or queues it.

    Refused while another scan is running: two scans would fight over the same pairs.
    """
    ensure_permitted(actor, "duplicates.change")
    value = _checked_threshold(threshold)
    with transaction.atomic():
        cutoff = timezone.now() - dt.timedelta(seconds=STALE_SCAN_SECONDS)
        running = None
        for candidate in DedupScan.objects.select_for_update().filter(status=ScanStatus.RUNNING):
            progress = (candidate.stats or {}).get("progress") or {}
            last = dt.datetime.fromisoformat(progress["at"]) if progress.get("at") else candidate.started_at
            if last >= cutoff:
                running = candidate
            else:
                candidate.status = ScanStatus.FAILED
                candidate.message = _("Stopped: no progress for %(minutes)s minutes.") % {
                    "minutes": STALE_SCAN_SECONDS // 60
                }
                candidate.finished_at = timezone.now()
                candidate.save(update_fields=["status", "message", "finished_at"])
        if running is not None:
            raise ScanRunning(
                _("Duplicate scan %(number)s is still running; wait for it to finish.")
                % {"number": running.pk}
            )
        scan = DedupScan.objects.create(threshold=value, created_by=actor)
        audit_record(actor=actor, action="duplicates.scan", target=scan, after={"threshold": value})
    return scan


def scan_run(
    scan: DedupScan,
    *,
    max_block: int = DEFAULT_MAX_BLOCK,
    page_size: int = PAGE_SIZE,
    on_progress: Callable[[ScanProgress], None] | None = None,
) -> DedupScan:
    """Run ``scan``: find, score and write candidate pairs; the scan row ends done or failed."""
    started = time.monotonic()
    timings: dict[str, float] = {}

    def report(progress: ScanProgress) -> None:
        # The scan page polls this row; one small UPDATE per phase or page of pairs.
        DedupScan.objects.filter(pk=scan.pk).update(
            stats={
                **(scan.stats or {}),
                "progress": {
                    "phase": progress.phase,
                    "done": progress.done,
                    "total": progress.total,
                    "found": progress.found,
                    "at": timezone.now().isoformat(),
                },
            }
        )
        if on_progress is not None:
            on_progress(progress)

    try:
        create_tables()
        total, block_stats = build_candidates(
            max_block=max_block, on_kind=lambda kind: report(ScanProgress(f"blocking:{kind}"))
        )
        timings["blocking"] = time.monotonic() - started
        scan.stats = {
            "blocks": {kind: stats.as_dict() for kind, stats in block_stats.items()},
            "candidates": total,
        }
        scan.save(update_fields=["stats"])
        scored = found = 0
        report(ScanProgress("scoring", 0, total))
        scoring_started = time.monotonic()
        for page in candidate_pages(page_size):
            found += _score_page(scan, page)
            scored += len(page)
            report(ScanProgress("scoring", scored, total, found))
        timings["scoring"] = time.monotonic() - scoring_started
        report(ScanProgress("clustering", scored, total, found))
        clustering_started = time.monotonic()
        removed, _by_model = DuplicatePair.objects.filter(status=PairStatus.OPEN).exclude(scan=scan).delete()
        clusters = assign_clusters()
        timings["clustering"] = time.monotonic() - clustering_started
        by_status = dict(
            DuplicatePair.objects.filter(scan=scan).values_list("status").annotate(count=Count("id"))
        )
        scan.customers_scanned = Customer.objects.count()
        scan.pairs_found = sum(by_status.values())
        scan.stats = {
            **scan.stats,
            "scored": scored,
            "found_by_status": by_status,
            "open_removed": removed,
            "clusters": clusters,
            "seconds": {name: round(value, 2) for name, value in timings.items()},
        }
        scan.status = ScanStatus.DONE
        scan.finished_at = timezone.now()
        scan.save(update_fields=["customers_scanned", "pairs_found", "stats", "status", "finished_at"])
    except BaseException as error:
        scan.status = ScanStatus.FAILED
        scan.message = f"{type(error).__name__}: {error}"[:2000]
        scan.finished_at = timezone.now()
        scan.save(update_fields=["status", "message", "finished_at"])
        raise
    finally:
        drop_tables()
    return scan


def _score_page(scan: DedupScan, page: list[tuple[int, int]]) -> int:
    profiles = pairs_profiles(page, streets_table=STREETS_TABLE)
    threshold = scan.threshold
    now = timezone.now()
    rows: list[DuplicatePair] = []
    for customer_a, customer_b in page:
        first, second = profiles.get(customer_a), profiles.get(customer_b)
        if first is None or second is None:
            continue  # deleted between blocking and scoring
        result = score_pair(first, second)
        if result.score < threshold:
            continue
        rows.append(
            DuplicatePair(
                customer_a_id=customer_a,
                customer_b_id=customer_b,
                score=result.score,
                # The text is for readers that do not render codes; pages render the code anew.
                reasons=[
                    {**reason.as_dict(), "text": reason_text(reason.code, reason.params)}
                    for reason in result.reasons
                ],
                conflicts=list(result.conflicts),
                scan=scan,
                found_at=now,
            )
        )
    if rows:
        with transaction.atomic():
            # Status, resolver and first-found time stay as they were on a pair seen before.
            DuplicatePair.objects.bulk_create(
                rows,
                batch_size=2000,
                update_conflicts=True,
                unique_fields=["customer_a", "customer_b"],
                update_fields=["score", "reasons", "conflicts", "scan"],
            )
    return len(rows)


def assign_clusters() -> int:
    """Give every open pair the cluster of its connected component; returns the number of clusters."""
    parent: dict[int, int] = {}

    def find(node: int) -> int:
        root = node
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(node, node) != root:  # path compression
            parent[node], node = root, parent[node]
        return root

    pairs = list(
        DuplicatePair.objects.filter(status=PairStatus.OPEN).values_list(
            "id", "customer_a_id", "customer_b_id", "cluster"
        )
    )
    for _pair_id, customer_a, customer_b, _cluster in pairs:
        root_a, root_b = find(customer_a), find(customer_b)
        if root_a != root_b:
            # The smaller id is the root, so a component's root is its smallest customer id.
            parent[max(root_a, root_b)] = min(root_a, root_b)
    changes = [
        (find(customer_a), pair_id)
        for pair_id, customer_a, _customer_b, cluster in pairs
        if find(customer_a) != cluster
    ]
    if changes:
        table = connection.ops.quote_name(DuplicatePair._meta.db_table)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(f"UPDATE {table} SET cluster = %s WHERE id = %s", changes)  # noqa: S608
    return len({find(customer_a) for _pair_id, customer_a, _b, _c in pairs})


def scan_latest() -> DedupScan | None:
    return DedupScan.objects.order_by("-started_at", "-id").first()


def scan_summary(scan: DedupScan) -> dict[str, Any]:
    """What the scan pages, API and CLI show of a scan."""
    stats = scan.stats or {}
    return {
        "id": scan.pk,
        "status": scan.status,
        "threshold": scan.threshold,
        "customers_scanned": scan.customers_scanned,
        "pairs_found": scan.pairs_found,
        "candidates": stats.get("candidates", 0),
        "started_at": scan.started_at,
        "finished_at": scan.finished_at,
        "message": scan.message,
        "stats": stats,
    }
