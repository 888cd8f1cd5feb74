"""Core tables: the tamper-evident audit log."""

from __future__ import annotations

from typing import Any, ClassVar, NoReturn

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class AppendOnlyQuerySet(models.QuerySet["AuditEvent"]):
    def update(self, **kwargs: Any) -> NoReturn:
        raise TypeError("audit events are append-only")

    def delete(self) -> NoReturn:
        raise TypeError("audit events are append-only")


class AuditEvent(models.Model):
    """One thing someone did to one record: append-only, each row chained to the previous.

    ``hash`` covers every column and the previous row's hash, so editing or deleting any row
    (or the newest ones) breaks the chain at that row; ``kehu audit verify`` walks it.
    Sensitive values are redacted before they reach ``before``/``after``.
    """

    sequence = models.BigIntegerField(_("sequence"), unique=True)
    created_at = models.DateTimeField(_("time"), db_index=True)
    # PROTECT: users are deactivated, never deleted, once they have acted; nulling the actor
    # would rewrite history and break the chain.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("actor"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    actor_label = models.CharField(_("actor name"), max_length=150, blank=True)
    action = models.CharField(_("action"), max_length=64, db_index=True)
    object_type = models.CharField(_("object type"), max_length=64, blank=True)
    object_id = models.CharField(_("object id"), max_length=64, blank=True)
    object_repr = models.CharField(_("object"), max_length=200, blank=True)
    before = models.JSONField(_("before"), null=True, blank=True)
    after = models.JSONField(_("after"), null=True, blank=True)
    ip = models.GenericIPAddressField(_("IP address"), null=True, blank=True)
    request_id = models.CharField(_("request id"), max_length=64, blank=True)
    channel = models.CharField(_("channel"), max_length=16, blank=True)
    prev_hash = models.CharField(_("previous hash"), max_length=64)
    hash = models.CharField(_("hash"), max_length=64)

    objects: ClassVar[AppendOnlyQuerySet] = AppendOnlyQuerySet.as_manager()  # type: ignore[assignment]

    class Meta:
        verbose_name = _("audit event")
        verbose_name_plural = _("audit events")
        indexes = [
            models.Index(fields=["object_type", "object_id", "sequence"], name="audit_object_idx"),
            models.Index(fields=["actor", "sequence"], name="audit_actor_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.action} {self.object_type}:{self.object_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise TypeError("audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("audit events are append-only")


class AuditChainHead(models.Model):
    """The single row holding the newest sequence and hash.

    Writers lock it (SELECT ... FOR UPDATE) so that events are chained in commit order, and
    verification compares it with the newest event to notice rows deleted from the end.
    """

    last_sequence = models.BigIntegerField(default=0)
    last_hash = models.CharField(max_length=64)

    class Meta:
        verbose_name = _("audit chain head")

    def __str__(self) -> str:
        return f"audit head #{self.last_sequence}"


class NumberSequence(models.Model):
    """A named counter for public numbers (customer codes, card numbers) apart from primary keys.

    Writers lock the row and take a block of values, so bulk paths reserve a million codes in
    one statement and concurrent writers never hand out the same number.
    """

    name = models.CharField(_("name"), max_length=64, primary_key=True)
    last_value = models.BigIntegerField(_("last value"), default=0)

    class Meta:
        verbose_name = _("number sequence")
        verbose_name_plural = _("number sequences")

    def __str__(self) -> str:
        return f"{self.name}={self.last_value}"


class IdempotencyRecord(models.Model):
    """The first result of a request sent with an ``Idempotency-Key`` header.

    A retry with the same key, user and operation gets the stored response instead of doing
    the work twice; the same key with a different body is refused (409).
    """

    key = models.CharField(_("key"), max_length=128)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("user"), on_delete=models.CASCADE, related_name="+"
    )
    operation = models.CharField(_("operation"), max_length=64)
    request_digest = models.CharField(_("request digest"), max_length=64)
    response_status = models.PositiveSmallIntegerField(_("response status"))
    response_body = models.JSONField(_("response body"))
    created_at = models.DateTimeField(_("created"), db_index=True)

    class Meta:
        verbose_name = _("idempotency record")
        verbose_name_plural = _("idempotency records")
        constraints = [
            models.UniqueConstraint(fields=["user", "operation", "key"], name="idempotency_unique_key"),
        ]

    def __str__(self) -> str:
        return f"{self.operation}:{self.key}"
