"""What the sales pages share: the page size and the exception that rolls a preview back."""

from __future__ import annotations

PAGE_SIZE = 50


class _Rollback(Exception):
    """Raised to undo a preview's writes."""
