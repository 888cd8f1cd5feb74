"""API endpoints for dedup."""

from ninja import Router

router = Router(tags=["dedup"])
