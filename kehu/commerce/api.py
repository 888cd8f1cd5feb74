"""REST endpoints of the commerce app (mounted at /api/v1 by kehu.api)."""

from ninja import Router

router = Router()
