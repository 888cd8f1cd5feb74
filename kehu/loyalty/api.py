"""REST endpoints of the loyalty app (mounted at /api/v1 by kehu.api)."""

from ninja import Router

router = Router()
