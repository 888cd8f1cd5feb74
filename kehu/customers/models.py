"""Customer records: the profile, its contacts and addresses, tags, custom fields, history.

Sensitive values (phone, email, ID number, street) are encrypted at rest; each has a blind
index of its normalised form beside it for exact lookup, and phones keep their last four
digits in clear for 尾号 search. Name, pinyin and initials stay in clear: they are what a
clerk searches by, and the search indexes (FTS5 on SQLite, pg_trgm on PostgreSQL, created in
migrations) are built on them.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from kehu.core.fields import EncryptedTextField

CODE_PREFIX = "C"
CODE_SEQUENCE = "customers.code"
CODE_DIGITS = 6

# Blind-index purposes: separate digests per kind of data, so equal strings do not link.
PHONE_INDEX_PURPOSE = "customer.phone"
EMAIL_INDEX_PURPOSE = "customer.email"
ID_NUMBER_INDEX_PURPOSE = "customer.id_number"


def format_code(number: int) -> str:
    """C000001 … C999999, then C1000000: the digits grow rather than wrap."""
    return f"{CODE_PREFIX}{number:0{CODE_DIGITS}d}"


class Gender(models.TextChoices):
    UNKNOWN = "", _("Not given")
    MALE = "male", _("Male")
    FEMALE = "female", _("Female")


class Status(models.TextChoices):
    ACTIVE = "active", _("Active")
    INACTIVE = "inactive", _("Inactive")
    BLOCKED = "blocked", _("Blocked")


class Source(models.TextChoices):
    WALK_IN = "walk_in", _("Walk-in")
    REFERRAL = "referral", _("Referral")
    PHONE = "phone", _("Phone call")
    WECHAT = "wechat", _("WeChat")
    WEBSITE = "website", _("Website")
    EVENT = "event", _("Event")
    PARTNER = "partner", _("Partner")
    IMPORT = "import", _("Import")
    API = "api", _("API")
    OTHER = "other", _("Other")


class PhoneKind(models.TextChoices):
    MOBILE = "mobile", _("Mobile")
    LANDLINE = "landline", _("Landline")
    OTHER = "other", _("Other")


class Tag(models.Model):
    name = models.CharField(_("name"), max_length=50, unique=True)
    color = models.CharField(_("colour"), max_length=16, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        verbose_name = _("tag")
        verbose_name_plural = _("tags")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ActiveCustomerManager(models.Manager["Customer"]):
    """Customers that have not been deleted; deleted records stay for history and audit."""

    def get_queryset(self) -> models.QuerySet[Customer]:
        return super().get_queryset().filter(deleted_at__isnull=True)


class Customer(models.Model):
    """One person who buys: the hub every card, order, ticket and interaction hangs off."""

    code = models.CharField(_("customer code"), max_length=16, unique=True)
    name = models.CharField(_("name"), max_length=100)
    # Computed from the name on every write (kehu.core.pinyin), never per query.
    name_pinyin = models.CharField(_("pinyin"), max_length=200, blank=True, editable=False)
    name_initials = models.CharField(_("initials"), max_length=50, blank=True, editable=False)
    # Every pinyin spelling a clerk may type (full, initials, surname + initials, ü as u),
    # space-separated: the column the trigram and prefix indexes cover.
    search_pinyin = models.CharField(max_length=400, blank=True, editable=False)
    gender = models.CharField(_("gender"), max_length=8, choices=Gender.choices, blank=True, default="")
    birthday = models.DateField(_("birthday"), null=True, blank=True)
    # month * 100 + day, for "birthday in March" and "in the next N days" through an index.
    birthday_month_day = models.PositiveSmallIntegerField(null=True, blank=True, editable=False)
    lunar_birthday_month = models.PositiveSmallIntegerField(_("lunar birthday month"), null=True, blank=True)
    lunar_birthday_day = models.PositiveSmallIntegerField(_("lunar birthday day"), null=True, blank=True)
    lunar_birthday_is_leap_month = models.BooleanField(_("leap month"), default=False)
    id_number = EncryptedTextField(_("ID number"), null=True, blank=True)
    id_number_index = models.CharField(max_length=32, blank=True, default="", editable=False)
    source = models.CharField(_("source"), max_length=16, choices=Source.choices, blank=True, default="")
    external_id = models.CharField(_("external id"), max_length=64, blank=True, default="")
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.ACTIVE)
    # PROTECT: a user who owns customers is deactivated, not deleted; the pool (owner = null)
    # is reached by reassigning, never by deleting the owner.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="owned_customers",
        # customer_owner_idx (owner, id) serves every lookup by owner; a second index only
        # slows each insert.
        db_index=False,
    )
    department = models.ForeignKey(
        "accounts.Department",
        verbose_name=_("department"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="customers",
        db_index=False,  # covered by customer_department_idx (department, id)
    )
    notes = models.TextField(_("notes"), blank=True, default="")
    custom_fields = models.JSONField(_("custom fields"), default=dict, blank=True)
    tags = models.ManyToManyField(
        Tag, verbose_name=_("tags"), through="CustomerTag", related_name="customers"
    )
    marketing_consent = models.BooleanField(_("marketing consent"), null=True, blank=True)
    consent_updated_at = models.DateTimeField(_("consent updated"), null=True, blank=True)
    # Optimistic locking: every update must name the version it read.
    version = models.PositiveIntegerField(_("version"), default=1)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated"), default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    deleted_at = models.DateTimeField(_("deleted"), null=True, blank=True)

    objects: ClassVar[ActiveCustomerManager] = ActiveCustomerManager()
    all_objects: ClassVar[models.Manager[Customer]] = models.Manager()

    scope_owner_field = "owner"
    scope_department_field = "department"

    class Meta:
        verbose_name = _("customer")
        verbose_name_plural = _("customers")
        base_manager_name = "all_objects"
        constraints = [
            models.UniqueConstraint(
                fields=["source", "external_id"],
                condition=~Q(external_id=""),
                name="customer_unique_external_id_per_source",
            ),
        ]
        indexes = [
            # Prefix search for one- and two-character names and short initials, which the
            # trigram indexes cannot answer (DESIGN.md §7).
            models.Index(fields=["name", "id"], name="customer_name_idx"),
            models.Index(fields=["name_initials", "id"], name="customer_initials_idx"),
            models.Index(fields=["owner", "id"], name="customer_owner_idx"),
            models.Index(fields=["department", "id"], name="customer_department_idx"),
            models.Index(fields=["created_at", "id"], name="customer_created_idx"),
            models.Index(fields=["birthday_month_day"], name="customer_birthday_md_idx"),
            models.Index(fields=["id_number_index"], name="customer_id_number_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None


class CustomerTag(models.Model):
    # Both lookups are served by the composite indexes below (customer, tag) and (tag, customer);
    # single-column indexes would only slow the bulk writes of imports.
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="tag_links", db_index=False)
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="customer_links", db_index=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["customer", "tag"], name="customer_tag_unique")]
        # Filtering customers by tag walks this index, then joins on customer id.
        indexes = [models.Index(fields=["tag", "customer"], name="customer_tag_by_tag_idx")]

    def __str__(self) -> str:
        return f"{self.customer_id}:{self.tag_id}"


class CustomerPhone(models.Model):
    # Indexed by customer_phone_unique_per_customer (customer, number_index).
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="phones", db_index=False)
    number = EncryptedTextField(_("phone"))  # E.164, e.g. +8613800138000
    number_index = models.CharField(max_length=32, editable=False)
    last4 = models.CharField(max_length=4, editable=False)
    extension = models.CharField(_("extension"), max_length=10, blank=True, default="")
    kind = models.CharField(_("type"), max_length=10, choices=PhoneKind.choices, default=PhoneKind.MOBILE)
    label = models.CharField(_("label"), max_length=30, blank=True, default="")
    is_primary = models.BooleanField(_("primary"), default=False)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        verbose_name = _("phone")
        verbose_name_plural = _("phones")
        ordering = ["customer", "position", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "number_index"], name="customer_phone_unique_per_customer"
            ),
        ]
        indexes = [
            models.Index(fields=["number_index"], name="customer_phone_index_idx"),
            models.Index(fields=["last4", "customer"], name="customer_phone_last4_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id}:{self.last4}"


class CustomerEmail(models.Model):
    # Indexed by customer_email_unique_per_customer (customer, address_index).
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="emails", db_index=False)
    address = EncryptedTextField(_("email"))
    address_index = models.CharField(max_length=32, editable=False)
    label = models.CharField(_("label"), max_length=30, blank=True, default="")
    is_primary = models.BooleanField(_("primary"), default=False)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        verbose_name = _("email")
        verbose_name_plural = _("emails")
        ordering = ["customer", "position", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "address_index"], name="customer_email_unique_per_customer"
            ),
        ]
        indexes = [models.Index(fields=["address_index"], name="customer_email_index_idx")]

    def __str__(self) -> str:
        return f"{self.customer_id}:email"


class CustomerAddress(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="addresses")
    label = models.CharField(_("label"), max_length=30, blank=True, default="")
    province = models.CharField(_("province"), max_length=30, blank=True, default="")
    city = models.CharField(_("city"), max_length=30, blank=True, default="")
    district = models.CharField(_("district"), max_length=30, blank=True, default="")
    street = EncryptedTextField(_("street"), blank=True, default="")
    postcode = models.CharField(_("postcode"), max_length=6, blank=True, default="")
    is_primary = models.BooleanField(_("primary"), default=False)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        verbose_name = _("address")
        verbose_name_plural = _("addresses")
        ordering = ["customer", "position", "id"]
        indexes = [models.Index(fields=["province", "city"], name="customer_address_region_idx")]

    def __str__(self) -> str:
        return f"{self.province}{self.city}{self.district}"


class CustomFieldKind(models.TextChoices):
    TEXT = "text", _("Text")
    NUMBER = "number", _("Number")
    DATE = "date", _("Date")
    CHOICE = "choice", _("Choice")
    MULTI_CHOICE = "multi_choice", _("Multiple choice")
    BOOLEAN = "boolean", _("Yes / no")


class CustomFieldDefinition(models.Model):
    """An admin-defined field; values live in ``Customer.custom_fields`` under ``key``.

    ``choices`` is a list of ``{"value": ..., "label": ...}`` for choice fields. Values are
    validated against the definition on every write, by every surface.
    """

    key = models.SlugField(_("key"), max_length=40, unique=True)
    label = models.CharField(_("label"), max_length=60)
    kind = models.CharField(_("type"), max_length=16, choices=CustomFieldKind.choices)
    choices = models.JSONField(_("choices"), default=list, blank=True)
    is_required = models.BooleanField(_("required"), default=False)
    help_text = models.CharField(_("help text"), max_length=200, blank=True, default="")
    position = models.PositiveSmallIntegerField(_("position"), default=0)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        verbose_name = _("custom field")
        verbose_name_plural = _("custom fields")
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return self.label

    def choice_values(self) -> list[str]:
        return [str(choice.get("value")) for choice in self.choices if isinstance(choice, dict)]


class EventKind(models.TextChoices):
    CREATED = "created", pgettext_lazy("timeline event", "Created")
    UPDATED = "updated", pgettext_lazy("timeline event", "Updated")
    DELETED = "deleted", pgettext_lazy("timeline event", "Deleted")
    RESTORED = "restored", pgettext_lazy("timeline event", "Restored")
    REVEALED = "revealed", pgettext_lazy("timeline event", "Sensitive value revealed")
    SELF_SERVICE_LINK = "self_service_link", pgettext_lazy("timeline event", "Self-service link created")
    SELF_SERVICE_SUBMITTED = (
        "self_service_submitted",
        pgettext_lazy("timeline event", "Customer submitted changes"),
    )
    SELF_SERVICE_REVIEWED = (
        "self_service_reviewed",
        pgettext_lazy("timeline event", "Customer changes reviewed"),
    )
    CARD_ISSUED = "card_issued", pgettext_lazy("timeline event", "Card issued")
    CARD_FROZEN = "card_frozen", pgettext_lazy("timeline event", "Card frozen")
    CARD_UNFROZEN = "card_unfrozen", pgettext_lazy("timeline event", "Card unfrozen")
    CARD_LOST = "card_lost", pgettext_lazy("timeline event", "Card reported lost")
    CARD_REPLACED = "card_replaced", pgettext_lazy("timeline event", "Card replaced")
    CARD_RENEWED = "card_renewed", pgettext_lazy("timeline event", "Card renewed")
    CARD_UPGRADED = "card_upgraded", pgettext_lazy("timeline event", "Card upgraded")
    CARD_EXPIRED = "card_expired", pgettext_lazy("timeline event", "Card expired")
    CARD_CANCELLED = "card_cancelled", pgettext_lazy("timeline event", "Card cancelled")
    CARD_TOPPED_UP = "card_topped_up", pgettext_lazy("timeline event", "Stored value topped up")
    LEDGER_ADJUSTED = "ledger_adjusted", pgettext_lazy("timeline event", "Balance adjusted")
    POINTS_TRANSFERRED = "points_transferred", pgettext_lazy("timeline event", "Points transferred")
    POINTS_EXPIRED = "points_expired", pgettext_lazy("timeline event", "Points expired")
    TIER_CHANGED = "tier_changed", pgettext_lazy("timeline event", "Tier changed")
    COUPON_ISSUED = "coupon_issued", pgettext_lazy("timeline event", "Coupon issued")
    ORDER_PLACED = "order_placed", pgettext_lazy("timeline event", "Order")
    ORDER_REFUNDED = "order_refunded", pgettext_lazy("timeline event", "Refund")
    MERGED = "merged", pgettext_lazy("timeline event", "Customers merged")
    UNMERGED = "unmerged", pgettext_lazy("timeline event", "Merge undone")
    INTERACTION = "interaction", pgettext_lazy("timeline event", "Interaction")


class CustomerEvent(models.Model):
    """One entry of the customer's timeline.

    Later apps (cards, orders, tickets) add their own kinds; ``data`` holds what the timeline
    shows, never a plain sensitive value (those are in ``CustomerChange``, encrypted).
    """

    # Indexed by customer_event_timeline_idx (customer, -occurred_at, -id).
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="events", db_index=False)
    occurred_at = models.DateTimeField(_("time"), default=timezone.now)
    kind = models.CharField(_("kind"), max_length=32)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("actor"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    actor_label = models.CharField(_("actor name"), max_length=150, blank=True, default="")
    channel = models.CharField(_("channel"), max_length=16, blank=True, default="")
    data = models.JSONField(_("data"), default=dict, blank=True)

    class Meta:
        verbose_name = _("customer event")
        verbose_name_plural = _("customer events")
        indexes = [
            models.Index(fields=["customer", "-occurred_at", "-id"], name="customer_event_timeline_idx")
        ]

    def __str__(self) -> str:
        return f"{self.customer_id}:{self.kind}"


class CustomerChange(models.Model):
    """One field's change within an event: before → after.

    Values are stored as JSON text, encrypted, because a phone's old value is as sensitive
    as its new one; ``mask_kind`` says how to mask them for users who may not see them.
    """

    event = models.ForeignKey(CustomerEvent, on_delete=models.CASCADE, related_name="changes")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="changes")
    field = models.CharField(_("field"), max_length=64)
    mask_kind = models.CharField(max_length=16, blank=True, default="")
    before = EncryptedTextField(_("before"), null=True, blank=True)
    after = EncryptedTextField(_("after"), null=True, blank=True)

    class Meta:
        verbose_name = _("field change")
        verbose_name_plural = _("field changes")
        indexes = [models.Index(fields=["customer", "-id"], name="customer_change_history_idx")]

    def __str__(self) -> str:
        return f"{self.customer_id}:{self.field}"


class SavedView(models.Model):
    """A user's saved list view: filters, visible columns and sort order."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="customer_views"
    )
    name = models.CharField(_("name"), max_length=60)
    filters = models.JSONField(_("filters"), default=dict, blank=True)
    columns = models.JSONField(_("columns"), default=list, blank=True)
    ordering = models.CharField(_("sort"), max_length=32, blank=True, default="")
    is_default = models.BooleanField(_("default view"), default=False)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        verbose_name = _("saved view")
        verbose_name_plural = _("saved views")
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["user", "name"], name="saved_view_unique_name_per_user")
        ]

    def __str__(self) -> str:
        return self.name


class SelfServiceLink(models.Model):
    """A signed, expiring, single-use link a customer opens to correct their own details."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="self_service_links")
    # SHA-256 of the secret part of the URL; the URL itself is shown once, to the staff member.
    token_digest = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires"))
    used_at = models.DateTimeField(_("used"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)

    class Meta:
        verbose_name = _("self-service link")
        verbose_name_plural = _("self-service links")

    def __str__(self) -> str:
        return f"{self.customer_id}:{self.created_at:%Y-%m-%d}"

    def is_usable(self, now: Any = None) -> bool:
        now = now or timezone.now()
        return self.used_at is None and self.revoked_at is None and self.expires_at > now


class SubmissionStatus(models.TextChoices):
    PENDING = "pending", _("Waiting for approval")
    APPLIED = "applied", _("Applied")
    REJECTED = "rejected", _("Rejected")


class SelfServiceSubmission(models.Model):
    """What a customer sent through a self-service link; applied at once or after review."""

    link = models.OneToOneField(SelfServiceLink, on_delete=models.CASCADE, related_name="submission")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="self_service_submissions")
    # The proposed changes as JSON, encrypted: they hold phones and emails.
    payload = EncryptedTextField()
    marketing_consent = models.BooleanField(_("marketing consent"), default=False)
    submitted_at = models.DateTimeField(_("submitted"), default=timezone.now)
    ip = models.GenericIPAddressField(null=True, blank=True)
    status = models.CharField(
        _("status"), max_length=16, choices=SubmissionStatus.choices, default=SubmissionStatus.PENDING
    )
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("self-service submission")
        verbose_name_plural = _("self-service submissions")
        indexes = [models.Index(fields=["status", "submitted_at"], name="self_service_status_idx")]

    def __str__(self) -> str:
        return f"{self.customer_id}:{self.status}"
