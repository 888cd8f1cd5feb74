"""The data-operations API: one router per area, mounted together."""

from ninja import Router

from kehu.dataops.api import dedup, exports, imports, merges, quality

router = Router()
for _area in (imports, exports, dedup, merges, quality):
    router.add_router("/", _area.router)

__all__ = ["router"]
