"""The customer API: one router, its endpoints in endpoints.py and its schemas in schemas.py."""

from kehu.customers.api.endpoints import router

__all__ = ["router"]
