"""API endpoints for exports."""

from ninja import Router

router = Router(tags=["exports"])
