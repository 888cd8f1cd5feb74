"""One process of the ledger concurrency proof (tests/loyalty/test_concurrency.py).

    python -m tests.loyalty.concurrency_worker setup  DIR
    python -m tests.loyalty.concurrency_worker work   DIR WORKER OPERATIONS
    python -m tests.loyalty.concurrency_worker verify DIR

run with KEHU_DATA_DIR / KEHU_DATABASE_URL pointing at a migrated scratch database that the
test made (a SQLite file or a PostgreSQL database of its own: the workers are separate
processes, so they must see committed data, never a test transaction).

``setup`` creates one customer and one active stored-value card with points and writes the
card's id to DIR/card.json. ``work`` waits until DIR/go exists (so that all workers start
together), then runs OPERATIONS ledger operations against that one card through the real write
path and writes what happened to each attempt to DIR/worker-N.json: applied (with its
movements), replayed (with the result it got back), refused (insufficient balance) or key
reused. ``verify`` prints the card, every entry, every operation and the reconcile report as
JSON. Nothing here decides whether the books are right: the test does, from these reports.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import traceback
from pathlib import Path
from typing import Any

# Operations in a worker's mix, by share (the rest are fresh top-ups).
SPEND_SHARE = 0.30
PURCHASE_SHARE = 0.20  # stored value paid and points earned in one operation
REDEEM_SHARE = 0.20
SELF_RETRY_SHARE = 0.10  # the same worker sends an earlier request again under its key
KEY_REUSE_SHARE = 0.02  # an earlier key with a different request: must be refused
# Every SHARED_EVERY-th operation of every worker uses the same key ("shared:<n>") with the same
# request: the workers reach it at about the same time, so some of these retries are concurrent.
SHARED_EVERY = 5


def _django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kehu.settings")
    import django

    django.setup()


def setup(directory: Path) -> None:
    _django()
    from kehu.customers.services import customer_create
    from kehu.loyalty.models import Card, CardKind, CardType

    card_type = CardType.objects.create(
        code="concurrency", name="Concurrency proof", kind=CardKind.STORED_VALUE, price_fen=0
    )
    customer = customer_create(actor=None, data={"name": "并发测试"})
    card = Card.objects.create(number="880000000017", customer=customer, card_type=card_type)
    (directory / "card.json").write_text(json.dumps({"card_id": card.pk, "number": card.number}))


def _movements(request: dict[str, Any]) -> list[tuple[str, int, str]]:
    """(ledger, signed amount, reason) of a request, in the order they are posted."""
    op = request["op"]
    amount = int(request["amount"])
    if op == "top_up":
        return [("stored_value", amount, "top_up")]
    if op == "spend":
        return [("stored_value", -amount, "spend")]
    if op == "redeem":
        return [("points", -amount, "redeem")]
    if op == "purchase":
        return [("stored_value", -amount, "spend"), ("points", amount // 10, "earn")]
    raise ValueError(op)


def _random_request(rng: random.Random) -> dict[str, Any]:
    draw = rng.random()
    if draw < SPEND_SHARE:
        return {"op": "spend", "amount": rng.randint(100, 6000)}
    if draw < SPEND_SHARE + PURCHASE_SHARE:
        return {"op": "purchase", "amount": rng.randint(100, 3000)}
    if draw < SPEND_SHARE + PURCHASE_SHARE + REDEEM_SHARE:
        return {"op": "redeem", "amount": rng.randint(10, 300)}
    return {"op": "top_up", "amount": rng.randint(100, 6000)}


def _shared_request(number: int) -> dict[str, Any]:
    # The same request for the same key in every worker, so the retries are true retries.
    shared_rng = random.Random(f"shared:{number}")  # noqa: S311 -- a test workload
    return _random_request(shared_rng)


class _Ledger:
    """The write path under test: the card services when they exist, else ``run_operation``."""

    def __init__(self, card_id: int) -> None:
        from kehu.loyalty.models import Card

        self.card_id = card_id
        self.card = Card.objects.get(pk=card_id)
        try:
            from kehu.loyalty.services import cards
        except ImportError:
            cards = None  # type: ignore[assignment]
        self.top_up = getattr(cards, "card_top_up", None)
        self.spend = getattr(cards, "card_spend", None)

    @property
    def path(self) -> str:
        return "card services" if self.top_up and self.spend else "run_operation"

    def run(self, request: dict[str, Any], key: str) -> tuple[dict[str, Any], bool]:
        op = request["op"]
        amount = int(request["amount"])
        if op == "top_up" and self.top_up is not None:
            outcome = self.top_up(actor=None, card=self.card, paid_fen=amount, payment_method="cash", key=key)
            return dict(outcome.result), bool(outcome.replayed)
        if op in ("spend", "redeem") and self.spend is not None:
            kind = "stored_value" if op == "spend" else "points"
            outcome = self.spend(actor=None, card=self.card, kind=kind, amount=amount, key=key)
            return dict(outcome.result), bool(outcome.replayed)
        return self._run_operation(request, key)

    def _run_operation(self, request: dict[str, Any], key: str) -> tuple[dict[str, Any], bool]:
        from kehu.loyalty.services.ledger import Movement, Posting, run_operation

        movements = [
            Movement(card_id=self.card_id, kind=kind, amount=amount, reason=reason, reference="proof")
            for kind, amount, reason in _movements(request)
        ]

        def perform(posting: Posting) -> dict[str, Any]:
            entries = posting.post(movements)
            return {
                "entries": [entry.pk for entry in entries],
                "balances": {entry.kind: entry.balance_after for entry in entries},
            }

        outcome = run_operation(
            kind=f"proof.{request['op']}", key=key, request=request, actor=None, perform=perform
        )
        return dict(outcome.result), outcome.replayed


def work(directory: Path, worker: int, operations: int) -> None:
    _django()
    from django.db import connection

    from kehu.loyalty.services.ledger import IdempotencyKeyReused, InsufficientBalance

    card_id = json.loads((directory / "card.json").read_text())["card_id"]
    ledger = _Ledger(card_id)
    connection.ensure_connection()
    (directory / f"ready-{worker}").touch()
    while not (directory / "go").exists():
        time.sleep(0.005)

    rng = random.Random(worker)  # noqa: S311 -- a test workload
    sent: list[tuple[str, dict[str, Any]]] = []  # this worker's earlier (key, request)
    attempts: list[dict[str, Any]] = []
    started = time.monotonic()
    for index in range(operations):
        draw = rng.random()
        if index % SHARED_EVERY == 0:
            number = index // SHARED_EVERY
            key, request = f"shared:{number}", _shared_request(number)
        elif sent and draw < SELF_RETRY_SHARE:
            key, request = sent[rng.randrange(len(sent))]
        elif sent and draw < SELF_RETRY_SHARE + KEY_REUSE_SHARE:
            key, request = sent[rng.randrange(len(sent))]
            request = {**request, "amount": int(request["amount"]) + 1}
        else:
            key, request = f"w{worker}:{index}", _random_request(rng)
        sent.append((key, request))
        attempt: dict[str, Any] = {"key": key, "request": request}
        try:
            result, replayed = ledger.run(request, key)
        except InsufficientBalance:
            attempt["outcome"] = "refused"
        except IdempotencyKeyReused:
            attempt["outcome"] = "key_reused"
        else:
            attempt["outcome"] = "replayed" if replayed else "applied"
            attempt["result"] = result
            if not replayed:
                attempt["movements"] = _movements(request)
        attempts.append(attempt)
    report = {
        "worker": worker,
        "path": ledger.path,
        "seconds": time.monotonic() - started,
        "attempts": attempts,
    }
    (directory / f"worker-{worker}.json").write_text(json.dumps(report))


def verify(directory: Path) -> None:
    _django()
    from kehu.loyalty.models import Card, LedgerEntry, LedgerOperation
    from kehu.loyalty.services.ledger import reconcile

    card_id = json.loads((directory / "card.json").read_text())["card_id"]
    card = Card.objects.values("stored_value_fen", "points_balance", "visits_balance").get(pk=card_id)
    entries = list(
        LedgerEntry.objects.filter(card_id=card_id)
        .order_by("id")
        .values_list("id", "kind", "amount", "balance_after", "reason", "operation__key")
    )
    report = reconcile()
    sys.stdout.write(
        json.dumps(
            {
                "card": card,
                "entries": entries,
                "operations": list(LedgerOperation.objects.values_list("key", flat=True)),
                "lots_remaining": sum(
                    card_lot
                    for card_lot in Card.objects.get(pk=card_id).points_lots.values_list(
                        "remaining", flat=True
                    )
                ),
                "reconcile": {
                    "accounts": report.accounts,
                    "entries": report.entries,
                    "clean": report.is_clean,
                    "discrepancies": [repr(item) for item in report.discrepancies],
                },
            }
        )
    )


def main(arguments: list[str]) -> int:
    mode, directory = arguments[0], Path(arguments[1])
    try:
        if mode == "setup":
            setup(directory)
        elif mode == "work":
            work(directory, int(arguments[2]), int(arguments[3]))
        elif mode == "verify":
            verify(directory)
        else:
            raise ValueError(f"unknown mode {mode!r}")
    except Exception:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
