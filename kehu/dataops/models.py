"""Imports, exports, duplicate candidates and merges: the bookkeeping of bulk data work.

No plain personal data is kept here. An import's rejected rows are stored as (row, column,
reason); the error file re-reads the original rows from the uploaded file, which lives in the
data folder until the import is deleted. Undo snapshots are encrypted like the customer's own
sensitive columns.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from kehu.core.fields import EncryptedTextField


class ImportKind(models.TextChoices):
    CUSTOMERS = "customers", _("Customers")
    CARDS = "cards", _("Cards with opening balances")
    ORDERS = "orders", _("Orders")
    INTERACTIONS = "interactions", _("Interactions")


class MatchMode(models.TextChoices):
    """What an import does with a row whose phone, email or ID number an existing customer has."""

    SKIP = "skip", _("Skip the row")
    FILL_EMPTY = "fill_empty", _("Fill the existing customer's empty fields")
    OVERWRITE = "overwrite", _("Overwrite the existing customer's fields")
    CREATE = "create", _("Create a new customer anyway")


class ImportStatus(models.TextChoices):
    UPLOADED = "uploaded", _("Uploaded")
    QUEUED = "queued", _("Queued")
    CHECKING = "checking", _("Checking (dry run)")
    CHECKED = "checked", _("Checked")
    RUNNING = "running", _("Importing")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")
    UNDONE = "undone", _("Undone")


class ImportJob(models.Model):
    """One uploaded file and everything done with it.

    ``rows_processed`` is the resume checkpoint: the number of data rows whose outcome
    (written, skipped or refused) is committed. It moves in the same transaction as the batch
    it counts, so an import killed at any moment and started again handles every row once.
    """

    kind = models.CharField(_("kind"), max_length=16, choices=ImportKind.choices)
    status = models.CharField(
        _("status"), max_length=16, choices=ImportStatus.choices, default=ImportStatus.UPLOADED
    )
    file_name = models.CharField(_("file name"), max_length=255)
    # Relative to settings.DATA_DIR; the server names the stored file, never the client.
    stored_path = models.CharField(max_length=255)
    file_size = models.BigIntegerField(_("file size"), default=0)
    file_sha256 = models.CharField(max_length=64, blank=True, default="")
    file_format = models.CharField(_("format"), max_length=8, blank=True, default="")
    encoding = models.CharField(_("encoding"), max_length=32, blank=True, default="")
    delimiter = models.CharField(_("delimiter"), max_length=4, blank=True, default="")
    sheet = models.CharField(_("sheet"), max_length=100, blank=True, default="")
    headers = models.JSONField(_("headers"), default=list, blank=True)
    # {"<column index>": "<target field key>"}; columns not named are ignored.
    mapping = models.JSONField(_("column mapping"), default=dict, blank=True)
    match_mode = models.CharField(
        _("rows matching existing customers"),
        max_length=16,
        choices=MatchMode.choices,
        default=MatchMode.SKIP,
    )
    options = models.JSONField(_("options"), default=dict, blank=True)
    is_dry_run = models.BooleanField(_("dry run"), default=False)
    rows_total = models.BigIntegerField(_("rows"), null=True, blank=True)
    rows_processed = models.BigIntegerField(_("rows processed"), default=0)
    rows_created = models.BigIntegerField(_("created"), default=0)
    rows_updated = models.BigIntegerField(_("updated"), default=0)
    rows_skipped = models.BigIntegerField(_("skipped"), default=0)
    rows_failed = models.BigIntegerField(_("rows with errors"), default=0)
    # {"<column header>": <count of errors>} and the first reasons, for the summary.
    errors_by_column = models.JSONField(_("errors by column"), default=dict, blank=True)
    message = models.TextField(_("message"), blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    # Written by the running job after every batch; a job that stopped beating was killed.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    undone_at = models.DateTimeField(_("undone"), null=True, blank=True)
    undone_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("undone by"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )

    class Meta:
        verbose_name = _("import")
        verbose_name_plural = _("imports")
        indexes = [models.Index(fields=["-created_at", "-id"], name="import_job_recent_idx")]

    def __str__(self) -> str:
        return f"{self.pk}:{self.kind}:{self.file_name}"


class ImportRowError(models.Model):
    """One refused value: the row (1-based, counting the header row as in the spreadsheet)."""

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="row_errors")
    row_number = models.BigIntegerField(_("row"))
    column = models.CharField(_("column"), max_length=255, blank=True, default="")
    reason = models.CharField(_("reason"), max_length=500)

    class Meta:
        indexes = [models.Index(fields=["job", "row_number"], name="import_row_error_idx")]

    def __str__(self) -> str:
        return f"{self.job_id}:{self.row_number}:{self.column}"


class RecordAction(models.TextChoices):
    CREATED = "created", _("Created")
    UPDATED = "updated", _("Updated")


class ImportedRecord(models.Model):
    """A record an import created or changed, so that the import can be undone as a whole.

    ``version_after`` is the customer's version right after the import wrote it: undo refuses
    when anything else has changed the record since. ``before`` holds, encrypted, the values an
    update replaced.
    """

    # Indexed by imported_record_once_per_row (job, row_number, model).
    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="records", db_index=False)
    row_number = models.BigIntegerField(_("row"))
    # "customer", "card", "order", "interaction"
    model = models.CharField(max_length=16)
    object_id = models.BigIntegerField()
    action = models.CharField(max_length=8, choices=RecordAction.choices)
    version_after = models.PositiveIntegerField(null=True, blank=True)
    before = EncryptedTextField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["job", "row_number", "model"], name="imported_record_once_per_row"
            )
        ]
        indexes = [models.Index(fields=["model", "object_id"], name="imported_record_object_idx")]

    def __str__(self) -> str:
        return f"{self.job_id}:{self.model}:{self.object_id}"


class MappingTemplate(models.Model):
    """A saved column mapping: header text (normalised) → target field, per import kind."""

    kind = models.CharField(_("kind"), max_length=16, choices=ImportKind.choices)
    name = models.CharField(_("name"), max_length=100)
    mapping = models.JSONField(_("column mapping"), default=dict)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated"), default=timezone.now)

    class Meta:
        verbose_name = _("mapping template")
        verbose_name_plural = _("mapping templates")
        constraints = [models.UniqueConstraint(fields=["kind", "name"], name="mapping_template_unique_name")]

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


class ExportFormat(models.TextChoices):
    CSV = "csv", "CSV"
    XLSX = "xlsx", "XLSX"


class ExportStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    DONE = "done", _("Ready")
    FAILED = "failed", _("Failed")
    EXPIRED = "expired", _("Expired")


class ExportJob(models.Model):
    """An export too big to stream in the request: written in the background, fetched by token."""

    # "customers", "cards", "orders", "segment", ...
    source = models.CharField(_("source"), max_length=32)
    params = models.JSONField(_("filters"), default=dict, blank=True)
    file_format = models.CharField(_("format"), max_length=8, choices=ExportFormat.choices)
    status = models.CharField(
        _("status"), max_length=16, choices=ExportStatus.choices, default=ExportStatus.QUEUED
    )
    rows = models.BigIntegerField(_("rows"), default=0)
    file_name = models.CharField(_("file name"), max_length=255, blank=True, default="")
    stored_path = models.CharField(max_length=255, blank=True, default="")
    # The download link's secret; only its hash is kept.
    token_hash = models.CharField(max_length=64, blank=True, default="", db_index=True)
    expires_at = models.DateTimeField(_("link expires"), null=True, blank=True)
    message = models.TextField(_("message"), blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("created by"), on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)

    class Meta:
        verbose_name = _("export")
        verbose_name_plural = _("exports")

    def __str__(self) -> str:
        return f"{self.pk}:{self.source}:{self.file_format}"


class ScanStatus(models.TextChoices):
    RUNNING = "running", _("Running")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")


class DedupScan(models.Model):
    status = models.CharField(
        _("status"), max_length=16, choices=ScanStatus.choices, default=ScanStatus.RUNNING
    )
    threshold = models.FloatField(_("threshold"))
    customers_scanned = models.BigIntegerField(_("customers scanned"), default=0)
    pairs_found = models.BigIntegerField(_("candidate pairs"), default=0)
    stats = models.JSONField(default=dict, blank=True)
    message = models.TextField(_("message"), blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("started by"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    started_at = models.DateTimeField(_("started"), default=timezone.now)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)

    class Meta:
        verbose_name = _("duplicate scan")
        verbose_name_plural = _("duplicate scans")

    def __str__(self) -> str:
        return f"scan {self.pk}"


class PairStatus(models.TextChoices):
    OPEN = "open", _("To review")
    MERGED = "merged", _("Merged")
    DISMISSED = "dismissed", _("Not duplicates")


class DuplicatePair(models.Model):
    """Two customers that may be one person; ``customer_a`` has the smaller id."""

    customer_a = models.ForeignKey(
        "customers.Customer", on_delete=models.CASCADE, related_name="+", db_constraint=True
    )
    customer_b = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="+")
    score = models.FloatField(_("score"))
    # [{"code": "same_phone", "text": "…", "weight": 0.6}, ...] — machine codes plus display text.
    reasons = models.JSONField(_("reasons"), default=list, blank=True)
    # Field names whose values disagree (negative evidence; blocks auto-merge).
    conflicts = models.JSONField(_("conflicting fields"), default=list, blank=True)
    # Pairs that share a customer, transitively, share a cluster (the smallest customer id in it).
    cluster = models.BigIntegerField(_("cluster"), default=0)
    status = models.CharField(_("status"), max_length=16, choices=PairStatus.choices, default=PairStatus.OPEN)
    scan = models.ForeignKey(
        DedupScan, null=True, blank=True, on_delete=models.SET_NULL, related_name="pairs"
    )
    found_at = models.DateTimeField(_("found"), default=timezone.now)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("resolved by"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    resolved_at = models.DateTimeField(_("resolved"), null=True, blank=True)

    class Meta:
        verbose_name = _("duplicate candidate")
        verbose_name_plural = _("duplicate candidates")
        constraints = [
            models.UniqueConstraint(fields=["customer_a", "customer_b"], name="duplicate_pair_unique"),
            models.CheckConstraint(
                condition=Q(customer_a__lt=models.F("customer_b")), name="duplicate_pair_ordered"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "-score", "id"], name="duplicate_pair_queue_idx"),
            models.Index(fields=["customer_b"], name="duplicate_pair_b_idx"),
            models.Index(fields=["cluster"], name="duplicate_pair_cluster_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.customer_a_id}~{self.customer_b_id}:{self.score:.2f}"


class Merge(models.Model):
    """N customers folded into one survivor; ``snapshot`` (encrypted JSON) is what undo restores."""

    survivor = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="+")
    # Ids of the customers folded in (soft-deleted by the merge).
    merged_ids = models.JSONField(default=list)
    # {"<field>": <customer id whose value survived>}
    choices = models.JSONField(default=dict, blank=True)
    snapshot = EncryptedTextField(null=True, blank=True)
    score = models.FloatField(null=True, blank=True)
    is_automatic = models.BooleanField(_("automatic"), default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("merged by"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    created_at = models.DateTimeField(_("merged"), default=timezone.now)
    undone_at = models.DateTimeField(_("undone"), null=True, blank=True)
    undone_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("undone by"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )

    class Meta:
        verbose_name = _("merge")
        verbose_name_plural = _("merges")

    def __str__(self) -> str:
        return f"merge {self.pk} → {self.survivor_id}"
