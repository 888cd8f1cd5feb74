"""API endpoints for quality."""

from ninja import Router

router = Router(tags=["quality"])
