"""Duplicate detection: precision, recall and F1 on a labelled set, and a scan of 1,000,000 customers.

Accuracy: bench/dedup_dataset.py generates 2,000 people with duplicates (typos, homophones,
swapped characters, pinyin spellings, traditional characters, missing fields, phone formats)
and look-alikes who are other people (namesakes, family sharing a phone); the real scan runs
over them and its pairs are compared with the labels at the default threshold (the figure's
floor is the floor the test suite asserts, F1 0.93).

Speed: the scan (blocking, scoring, writing pairs, clustering) over the cached dataset of
1,000,000 demo customers that the customers scenario uses, against a floor of the blocking
keys' bare SQL GROUP BYs (no decryption, no scoring), with the scan process's peak RSS and its
decrypting workers'. The pairs the scan writes are removed afterwards, so the cached dataset
stays as it was.

The measurements run in a subprocess per database (``python -m bench.scenarios.dedup``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

from bench.harness import (
    REPO_ROOT,
    BenchError,
    Context,
    Result,
    ScratchDatabase,
    cached_database,
    prepare,
    prepare_with,
    scratch_database,
)

NAME = "dedup"
NEEDS_WRK = False
CUSTOMERS = int(os.environ.get("KEHU_BENCH_CUSTOMERS", "1000000"))
PERSONS = int(os.environ.get("KEHU_BENCH_DEDUP_PERSONS", "2000"))
F1_FLOOR = 0.93


def _measure_in(database: ScratchDatabase, what: str, *, timeout: float) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "bench.scenarios.dedup", what, "--persons", str(PERSONS)],
        cwd=REPO_ROOT,
        env=database.env(),
        stdout=subprocess.PIPE,
        text=True,
        check=False,
        timeout=timeout,
    )
    if completed.returncode != 0:
        raise BenchError(
            f"the dedup {what} measurement on {database.vendor} failed (exit {completed.returncode})"
        )
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


def run(context: Context) -> list[Result]:
    results: list[Result] = []
    for vendor in context.databases:
        with scratch_database(vendor, postgres_url=context.options.postgres_url) as database:
            prepare(database)
            context.log(f"{NAME} on {vendor}: labelled set of {PERSONS:,} people")
            labelled = _measure_in(database, "labelled", timeout=1800)
        figures = labelled["at_default"]
        for key in ("f1", "precision", "recall"):
            results.append(
                Result(
                    scenario=NAME,
                    name=f"labelled {PERSONS:,} people: {key} at threshold {labelled['threshold']}",
                    database=vendor,
                    value=figures[key],
                    unit="",
                    floor_name=f"F1 floor asserted by the tests ({F1_FLOOR})",
                    floor_value=F1_FLOOR,
                    ratio=figures[key] / F1_FLOOR,
                    goal_min_ratio=1.0 if key == "f1" else None,
                    details=labelled,
                )
            )
        context.note(
            NAME,
            f"{vendor}: {labelled['records']:,} records of {PERSONS:,} people; at threshold {labelled['threshold']}: "
            f"{figures['correct_pairs']} of {figures['found_pairs']} pairs found are true, out of "
            f"{figures['true_pairs']} true pairs. By threshold (precision/recall/F1): "
            + "; ".join(
                f"{threshold}: {value['precision']:.3f}/{value['recall']:.3f}/{value['f1']:.3f}"
                for threshold, value in labelled["by_threshold"].items()
            ),
        )
        with cached_database(
            vendor, name=f"customers_{CUSTOMERS}", postgres_url=context.options.postgres_url
        ) as cached:
            context.log(
                f"{NAME} on {vendor}: scan of {CUSTOMERS:,} customers in {cached.data_dir} (built if missing)"
            )
            prepare_with(cached, ["--customers", str(CUSTOMERS)], timeout=4 * 3600)
            scan = _measure_in(cached, "scan", timeout=4 * 3600)
        results.append(
            Result(
                scenario=NAME,
                name=f"scan of {scan['customers']:,} customers",
                database=vendor,
                value=scan["seconds"],
                unit="s",
                floor_name="GROUP BY of every blocking key in bare SQL",
                floor_value=scan["floor_seconds"],
                ratio=scan["seconds"] / scan["floor_seconds"] if scan["floor_seconds"] else 0.0,
                details=scan,
            )
        )
        context.note(
            NAME,
            f"{vendor}: scan of {scan['customers']:,} customers in {scan['seconds']:.1f} s "
            f"({scan['candidates']:,} pairs compared, {scan['pairs']:,} candidate pairs); phases "
            f"{scan['phases']}; peak RSS {scan['rss_mb']:.0f} MB (scan process), "
            f"{scan['children_rss_mb']:.0f} MB (largest decrypting worker).",
        )
    return results


# --- the measuring subprocess ---------------------------------------------------------------
def _floor_seconds() -> float:
    """The blocking keys grouped in SQL, as bare as it gets: the least a scan must read."""
    from django.db import connection

    statements = [
        "SELECT COUNT(*) FROM (SELECT number_index FROM customers_customerphone GROUP BY number_index "
        "HAVING COUNT(*) > 1) grouped",
        "SELECT COUNT(*) FROM (SELECT address_index FROM customers_customeremail GROUP BY address_index "
        "HAVING COUNT(*) > 1) grouped",
        "SELECT COUNT(*) FROM (SELECT id_number_index FROM customers_customer WHERE id_number_index <> '' "
        "GROUP BY id_number_index HAVING COUNT(*) > 1) grouped",
        "SELECT COUNT(*) FROM (SELECT name_pinyin, birthday FROM customers_customer WHERE birthday IS NOT NULL "
        "GROUP BY name_pinyin, birthday HAVING COUNT(*) > 1) grouped",
        "SELECT COUNT(*) FROM (SELECT c.name, a.city FROM customers_customer c JOIN customers_customeraddress a "
        "ON a.customer_id = c.id GROUP BY c.name, a.city HAVING COUNT(*) > 1) grouped",
        "SELECT COUNT(*) FROM customers_customeraddress WHERE street <> ''",
    ]
    started = time.monotonic()
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
            cursor.fetchall()
    return time.monotonic() - started


def _scan() -> dict[str, Any]:
    from kehu.dataops.models import DedupScan, DuplicatePair
    from kehu.dataops.services.dedup.scan import scan_run, scan_start

    before = set(DedupScan.objects.values_list("id", flat=True))
    started = time.monotonic()
    scan = scan_run(scan_start(actor=None))
    seconds = time.monotonic() - started
    # Read before the floor runs: its GROUP BYs use the settings' in-memory temp store and
    # memory-mapped file, which would count in this process's peak.
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    floor = _floor_seconds()
    result = {
        "customers": scan.customers_scanned,
        "seconds": round(seconds, 1),
        "floor_seconds": round(floor, 1),
        "pairs": scan.pairs_found,
        "candidates": scan.stats.get("candidates", 0),
        "phases": scan.stats.get("seconds", {}),
        "blocks": scan.stats.get("blocks", {}),
        "rss_mb": rss_mb,
        "children_rss_mb": children_rss_mb,
    }
    # The cached dataset is shared: leave it as it was found.
    DuplicatePair.objects.all().delete()
    DedupScan.objects.exclude(id__in=before).delete()
    return result


def _labelled(persons: int) -> dict[str, Any]:
    from bench.dedup_dataset import measure

    return measure(persons=persons)


def main() -> int:
    parser = argparse.ArgumentParser(description="one dedup measurement on the configured database")
    parser.add_argument("what", choices=["scan", "labelled"])
    parser.add_argument("--persons", type=int, default=PERSONS)
    arguments = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()
    result = _scan() if arguments.what == "scan" else _labelled(arguments.persons)
    json.dump(result, sys.stdout, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
