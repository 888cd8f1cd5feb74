"""One domain error type with stable codes; the API maps it to its error body."""

from __future__ import annotations

from typing import Any, ClassVar

from django.utils.translation import gettext


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

    @classmethod
    def for_field(cls, field: str, reason: str, *, label: str | None = None) -> ValidationFailed:
        """One field refused for one reason; the message reads "手机: 不是有效的手机号码" when labelled."""
        message = gettext("%(field)s: %(reason)s") % {"field": label, "reason": reason} if label else reason
        return cls(message, fields={field: [reason]})


class NotFound(DomainError):
    code = "not_found"
    status = 404


class PermissionDeniedError(DomainError):
    code = "permission_denied"
    status = 403


class Conflict(DomainError):
    code = "conflict"
    status = 409
