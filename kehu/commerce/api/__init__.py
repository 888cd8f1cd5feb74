"""The commerce API: one router, its endpoints in endpoints.py and its schemas in schemas.py."""

from kehu.commerce.api.endpoints import router

__all__ = ["router"]
