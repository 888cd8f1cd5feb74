"""API endpoints for merges."""

from ninja import Router

router = Router(tags=["merges"])
