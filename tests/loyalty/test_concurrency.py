"""The books stay exact under concurrency (issue 4, item 8).

Eight processes run 500 ledger operations each against ONE card: stored-value spends, points
redemptions, top-ups, purchases that pay with stored value and earn points in one operation,
retries of their own earlier requests, reuses of a key for a different request, and every fifth
operation a key shared by all eight processes (retries racing each other across processes). The
workers (tests/loyalty/concurrency_worker.py) go through the real write path on a real database
of their own: a SQLite file, and a PostgreSQL database created for the test, both migrated by
``kehu migrate`` in a subprocess. They report what happened to each attempt; the books must
agree with the reports exactly:

* the final balances equal the starting balances plus the movements of the applied operations
  (a spend refused for want of balance is expected, counted and moves nothing);
* every key was applied at most once across all processes, and exactly the applied keys have an
  operation row; each operation wrote exactly its movements (no entry lost or doubled);
* every replay got back the very result of the operation it replayed;
* no ``balance_after`` is negative, and each account's entries, in id order, form an unbroken
  running balance (each ``balance_after`` is the previous one plus the amount);
* ``reconcile()`` (and ``kehu ledger reconcile`` when the command exists) is clean, points
  lots included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.scratch import scratch_database

REPO_ROOT = Path(__file__).resolve().parents[2]
KEHU = str(Path(sys.executable).with_name("kehu"))
WORKERS = 8
OPERATIONS = 500
# Each process is generous; the whole run takes well under a minute per database on 2 cores.
WORKER_TIMEOUT = 240


@pytest.fixture(params=["sqlite", "postgresql"])
def scratch(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A migrated database the worker processes share, with the environment that points at it."""
    vendor = request.param
    with scratch_database(tmp_path / "data", vendor, f"kehu_concurrency_{os.getpid()}") as environment:
        yield {"vendor": vendor, "dir": str(tmp_path), **environment}


def _worker(environment: dict[str, str], *arguments: str) -> list[str]:
    return [sys.executable, "-m", "tests.loyalty.concurrency_worker", *arguments]


def _run(environment: dict[str, str], *arguments: str) -> str:
    completed = subprocess.run(  # noqa: S603 -- our own worker module
        _worker(environment, *arguments),
        cwd=REPO_ROOT,
        env={key: value for key, value in environment.items() if key not in ("vendor", "dir")},
        capture_output=True,
        text=True,
        timeout=WORKER_TIMEOUT,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def _race(environment: dict[str, str], directory: Path) -> list[dict[str, Any]]:
    """Start the workers, release them together, and collect their reports."""
    env = {key: value for key, value in environment.items() if key not in ("vendor", "dir")}
    processes = [
        subprocess.Popen(  # noqa: S603 -- our own worker module
            _worker(environment, "work", str(directory), str(number), str(OPERATIONS)),
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for number in range(WORKERS)
    ]
    try:
        deadline = time.monotonic() + WORKER_TIMEOUT
        while not all((directory / f"ready-{number}").exists() for number in range(WORKERS)):
            failed = [process for process in processes if process.poll() not in (None, 0)]
            assert not failed, failed[0].communicate()[1]
            assert time.monotonic() < deadline, "the workers never got ready"
            time.sleep(0.02)
        (directory / "go").touch()
        for process in processes:
            _out, errors = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
            assert process.returncode == 0, errors
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return [json.loads((directory / f"worker-{number}.json").read_text()) for number in range(WORKERS)]


def test_eight_processes_on_one_card_keep_the_books_exact(scratch: dict[str, str]) -> None:
    directory = Path(scratch["dir"])
    _run(scratch, "setup", str(directory))
    reports = _race(scratch, directory)
    books = json.loads(_run(scratch, "verify", str(directory)))

    # The card services when they exist (what the API runs), else the bare write path.
    from kehu.loyalty.services import cards

    expected_path = "card services" if hasattr(cards, "card_top_up") else "run_operation"
    assert {report["path"] for report in reports} == {expected_path}
    attempts = [attempt for report in reports for attempt in report["attempts"]]
    assert len(attempts) == WORKERS * OPERATIONS
    outcomes = Counter(attempt["outcome"] for attempt in attempts)
    applied = [attempt for attempt in attempts if attempt["outcome"] == "applied"]
    applied_by_key = {attempt["key"]: attempt for attempt in applied}

    # The run exercised what it claims to: overdrafts refused, replays (some across processes
    # on shared keys), reused keys refused, and every kind of operation applied.
    assert outcomes["refused"] > 0
    assert outcomes["replayed"] > 0
    assert outcomes["key_reused"] > 0
    assert {attempt["request"]["op"] for attempt in applied} == {"top_up", "spend", "redeem", "purchase"}
    replayed_shared = [a for a in attempts if a["outcome"] == "replayed" and a["key"].startswith("shared:")]
    assert len({attempt["key"] for attempt in replayed_shared}) >= 10

    # Each key applied at most once across all processes, and exactly the applied keys have an
    # operation row.
    assert len(applied_by_key) == len(applied), [
        k for k, n in Counter(a["key"] for a in applied).items() if n > 1
    ]
    assert sorted(books["operations"]) == sorted(applied_by_key)

    # Every replay got the result of the operation it replayed.
    for attempt in attempts:
        if attempt["outcome"] == "replayed":
            original = applied_by_key[attempt["key"]]
            assert attempt["request"] == original["request"]
            assert attempt["result"] == original["result"]

    # Each operation wrote exactly its movements: none lost, none doubled.
    written: dict[str, list[tuple[str, int, str]]] = defaultdict(list)
    for _id, kind, amount, _balance, reason, key in books["entries"]:
        written[key].append((kind, amount, reason))
    assert len(books["entries"]) == sum(len(attempt["movements"]) for attempt in applied)
    for key, attempt in applied_by_key.items():
        assert sorted(written[key]) == sorted(tuple(movement) for movement in attempt["movements"]), key

    # Final balances are the arithmetic of what the workers were told was applied.
    expected = Counter()
    for attempt in applied:
        for kind, amount, _reason in attempt["movements"]:
            expected[kind] += amount
    assert books["card"]["stored_value_fen"] == expected["stored_value"]
    assert books["card"]["points_balance"] == expected["points"]
    assert books["card"]["visits_balance"] == 0
    assert books["lots_remaining"] == expected["points"]

    # Never negative, and each account is one unbroken running balance in id order.
    running: Counter[str] = Counter()
    for _id, kind, amount, balance_after, _reason, _key in books["entries"]:
        running[kind] += amount
        assert balance_after >= 0
        assert balance_after == running[kind]

    assert books["reconcile"]["clean"], books["reconcile"]["discrepancies"]
    assert books["reconcile"]["entries"] == len(books["entries"])
    if (REPO_ROOT / "kehu" / "loyalty" / "management" / "commands" / "ledger.py").exists():
        env = {key: value for key, value in scratch.items() if key not in ("vendor", "dir")}
        command = subprocess.run(  # noqa: S603 -- our own console script
            [KEHU, "ledger", "reconcile", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert command.returncode == 0, command.stdout + command.stderr
