"""One domain error type with stable codes; the API maps it to its error body."""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    """A business rule refused the request.

    ``code`` is stable and machine-readable; ``message`` is already translated for the user;
    ``fields`` maps a field name to the reasons that field was refused.
    """

    code: ClassVar[str] = "domain_error"
    status: ClassVar[int] = 400

    def __init__(self, message: str, *, fields: dict[str, list[str]] | None = None, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}
        self.context = context


class ValidationFailed(DomainError):
    code = "validation_error"
    status = 422


class NotFound(DomainError):
    code = "not_found"
    status = 404


class PermissionDeniedError(DomainError):
    code = "permission_denied"
    status = 403


class Conflict(DomainError):
    code = "conflict"
    status = 409
