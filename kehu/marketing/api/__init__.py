"""The segments API (mounted at "/" with tag "segments")."""

from kehu.marketing.api.segments import router

__all__ = ["router"]
