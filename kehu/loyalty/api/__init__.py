"""REST endpoints of the loyalty app (mounted at /api/v1 by kehu.api): cards, card types, tiers.

Cards are read through the selectors, so a card outside the caller's data scope is 404. Ledger
writes (issue, top-up, spend, adjust, transfer, renew, replace, cancel) pass the
``Idempotency-Key`` header to the service as its key and answer from the operation's stored
result, so a retry gets the first body back with ``Idempotent-Replayed: true``. Status changes
without money (freeze, unfreeze, report lost, upgrade) keep their first response per key too.

One router, its endpoints by sub-domain: ``cards`` (reads and issue), ``balances`` (ledger
writes), ``lifecycle`` (status changes), ``programme`` (card types, tiers, the books); the
schemas and presenters in ``schemas``, the shared helpers in ``_common``. A path lives in one
module only: ninja answers 405 when two routers share a path with different methods.
"""

from ninja import Router

from kehu.loyalty.api import balances, cards, lifecycle, programme

router = Router(tags=["cards"])
router.add_router("", cards.router)
router.add_router("", balances.router)
router.add_router("", lifecycle.router)
router.add_router("", programme.router)

__all__ = ["router"]
