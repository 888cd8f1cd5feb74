"""The customer row handler: validate cells with the customer validators, write in bulk.

Validation runs in worker processes, which then compute the stored form of a slice's valid
rows together (pinyin, ciphertexts, blind indexes: ``prepare_customers``), so that the main
process only looks up matches and writes: that is what lets an import use both cores (DESIGN.md §7).

Rows that match a customer by phone, email or ID number (blind indexes) follow the job's match
mode. A row matching a customer that an earlier row of the same file created is an in-file
duplicate: refused with the earlier row's number, except in "create" mode.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from django.db import DatabaseError, connection
from django.utils import timezone
from django.utils.translation import gettext as _

from kehu.core.emails import normalise_email
from kehu.core.errors import ValidationFailed
from kehu.core.idcard import id_number_consistency_errors, parse_id_number
from kehu.core.phones import normalise_phone
from kehu.customers.bulk import (
    AddressRow,
    CustomerBatchPreparer,
    CustomerRow,
    EmailRow,
    PhoneRow,
    PreparedBatch,
)
from kehu.customers.models import (
    CustomFieldDefinition,
    CustomFieldKind,
    Gender,
    Source,
    Status,
)
from kehu.customers.validation import (
    EARLIEST_BIRTHDAY,
    MAX_EMAILS,
    MAX_PHONES,
    MAX_TAGS,
    NAME_MAX_LENGTH,
    POSTCODE_LENGTH,
    TAG_MAX_LENGTH,
    Errors,
    clean_custom_value,
    clean_text,
)
from kehu.dataops.models import ImportKind, MatchMode
from kehu.dataops.services.importing import customer_updates
from kehu.dataops.services.importing.base import (
    BatchOutcome,
    CellError,
    ImportContext,
    TargetField,
    register_handler,
)
from kehu.dataops.services.importing.fields import CUSTOM_FIELD_PREFIX, custom_target_fields, customer_fields
from kehu.dataops.services.values import parse_bool, parse_date

if TYPE_CHECKING:
    from kehu.dataops.services.importing.customer_staging import CustomerStage, StagedKeys

_PHONE_SPLIT: Final = re.compile(r"[,;/|，；、\n]+")
_EMAIL_SPLIT: Final = re.compile(r"[,;|，；、\s]+")
_TAG_SEPARATORS: Final = str.maketrans({"；": ",", ";": ",", "、": ",", "|": ",", "\n": ",", "，": ","})
_MALE: Final = frozenset({"男", "m", "male", "先生", "man", "boy", "1"})
_FEMALE: Final = frozenset({"女", "f", "female", "女士", "woman", "girl", "2"})
# Read once: an enum member's .value goes through a descriptor on every access.
_MALE_VALUE: Final[str] = Gender.MALE.value
_FEMALE_VALUE: Final[str] = Gender.FEMALE.value
_ACTIVE: Final[str] = Status.ACTIVE.value


@dataclass(frozen=True, slots=True)
class _Definition:
    """A custom field definition as plain data: picklable, no ORM in the workers."""

    key: str
    label: str
    kind: str
    choices: tuple[str, ...]
    is_required: bool

    def choice_values(self) -> list[str]:
        return list(self.choices)


@dataclass(frozen=True)
class CustomerState:
    preparer: CustomerBatchPreparer
    # For staged rows (customer_staging): no "created" events, which the copy makes.
    stage_preparer: CustomerBatchPreparer
    definitions: tuple[_Definition, ...]
    owner_id: int | None
    department_id: int | None
    created_by_id: int | None
    default_source: str
    # Choice labels (in the job's language) → value, lower-cased, for gender/source/status cells.
    sources: dict[str, str]
    statuses: dict[str, str]
    # The local date when the run started: birthdays after it are refused. Read once, since
    # timezone.localdate() costs more than the rest of a date check.
    today: dt.date = field(default_factory=timezone.localdate)
    # Matched rows update customers (fill empty / overwrite): a staged row keeps its values.
    keep_values: bool = False


class ValidatedCustomer(NamedTuple):
    """A row ready to write, as plain tuples: it crosses from a worker in a pipe, and pickling
    tuples costs a fraction of pickling the dataclasses (the main process's time is the budget).

    ``customer``, ``phones``, ``emails``, ``addresses`` and ``event`` are the row's
    ``PreparedBatch`` entries (contacts still start with offset 0); ``row_data`` is the clean
    row for updates of existing customers (``row`` rebuilds it); ``given`` the keys with a value.
    Both are empty unless the run updates existing customers (``CustomerState.keep_values``).
    """

    row_data: tuple[Any, ...]
    customer: tuple[Any, ...]
    phones: list[tuple[Any, ...]]
    emails: list[tuple[Any, ...]]
    addresses: list[tuple[Any, ...]]
    tags: tuple[str, ...]
    event: tuple[Any, ...] | None
    given: tuple[str, ...]

    @property
    def row(self) -> CustomerRow:
        (name, gender, birthday, id_number, phones, emails, addresses, tags, owner_id, department_id,
         source, external_id, status, notes, custom_fields, consent, created_by_id) = self.row_data  # fmt: skip
        return CustomerRow(
            name=name,
            gender=gender,
            birthday=birthday,
            id_number=id_number,
            phones=tuple(PhoneRow(*phone) for phone in phones),
            emails=tuple(EmailRow(address) for address in emails),
            addresses=tuple(AddressRow(*address) for address in addresses),
            tags=tags,
            owner_id=owner_id,
            department_id=department_id,
            source=source,
            external_id=external_id,
            status=status,
            notes=notes,
            custom_fields=custom_fields,
            marketing_consent=consent,
            created_by_id=created_by_id,
        )


def _cell(text: str, limit: int) -> str:
    """``clean_text`` with a fast path for the usual cell: printable and already NFC."""
    if not text:
        return ""
    if text.isprintable() and unicodedata.is_normalized("NFC", text):
        return text.strip()[:limit]
    return clean_text(text, max_length=limit)[:limit]


def _choice_lookup(choices: Any) -> dict[str, str]:
    lookup: dict[str, str] = {}
    for value, label in choices.choices:
        if value:
            lookup[str(value).lower()] = str(value)
            lookup[str(label).lower()] = str(value)
    return lookup


def _reason(error: ValidationFailed) -> str:
    for reasons in error.fields.values():
        if reasons:
            return reasons[0]
    return error.message


def _column_for(error_key: str) -> str:
    """An ``Errors`` key ("phones.0.number", "custom_fields.level") as the import's target key."""
    head, _sep, rest = error_key.partition(".")
    if head == "custom_fields":
        return f"{CUSTOM_FIELD_PREFIX}{rest.split('.')[0]}"
    if head == "addresses":
        return "postcode" if rest.endswith("postcode") else "street"
    return head


class CustomerHandler:
    kind = ImportKind.CUSTOMERS.value

    def target_fields(self) -> list[TargetField]:
        definitions = CustomFieldDefinition.objects.filter(is_active=True).order_by("position", "id")
        return customer_fields() + custom_target_fields(
            (definition.key, definition.label) for definition in definitions
        )

    def prepare_context(self, context: ImportContext) -> CustomerState:
        from kehu.core import crypto

        # Loaded here, before the fork, so that the workers do not each read the key file.
        crypto.load_keyring()
        definitions = tuple(
            _Definition(
                key=definition.key,
                label=definition.label,
                kind=definition.kind,
                choices=tuple(definition.choice_values()),
                is_required=definition.is_required,
            )
            for definition in CustomFieldDefinition.objects.filter(is_active=True).order_by("position", "id")
        )
        options = context.options
        actor = context.actor
        # As a customer created by hand: owned by whoever imports, in their department, unless
        # the job's options name another owner (None: the public pool).
        owner_id = options.get("owner_id", actor.pk if actor else None)
        department_id = options.get("department_id", actor.department_id if actor else None)
        return CustomerState(
            preparer=CustomerBatchPreparer(vendor=context.vendor, creation_event_channel="import"),
            stage_preparer=CustomerBatchPreparer(vendor=context.vendor),
            definitions=definitions,
            owner_id=owner_id,
            department_id=department_id,
            created_by_id=context.actor.pk if context.actor is not None else None,
            default_source=Source.IMPORT.value,
            sources=_choice_lookup(Source),
            statuses=_choice_lookup(Status),
            keep_values=context.match_mode in (MatchMode.FILL_EMPTY, MatchMode.OVERWRITE),
        )

    def validate(self, values: dict[str, str], state: Any) -> tuple[Any, list[CellError]]:
        assert isinstance(state, CustomerState)  # noqa: S101 -- prepare_context's own value
        return validate_customer(values, state)

    def prepare_valid(self, values: list[Any], state: Any) -> list[Any]:
        assert isinstance(state, CustomerState)  # noqa: S101 -- prepare_context's own value
        return prepare_customers(values, state)

    def write(self, rows: list[tuple[int, Any]], context: ImportContext) -> BatchOutcome:
        from kehu.dataops.services.importing.customer_writes import write_customers

        return write_customers(rows, context)

    def stage(self, state: Any, path: Path) -> CustomerStage:
        """In a worker: the scratch file a chunk's valid rows go to (SQLite, kehu…customer_staging)."""
        from kehu.dataops.services.importing.customer_staging import CustomerStage

        assert isinstance(state, CustomerState)  # noqa: S101 -- prepare_context's own value
        # Without creation events, which the copy makes from the staged customer; a run that
        # keeps the rows' prepared values keeps them whole.
        preparer = state.preparer if state.keep_values else state.stage_preparer
        return CustomerStage(path, preparer=preparer, keep_values=state.keep_values)

    def write_staged(self, stage: str, context: ImportContext, keys: StagedKeys) -> BatchOutcome:
        from kehu.dataops.services.importing.customer_staging import write_staged

        return write_staged(stage, context, keys)

    def undo(self, context: ImportContext) -> int:
        return customer_updates.undo_customers(context)

    @contextlib.contextmanager
    def session(self, context: ImportContext) -> Iterator[None]:
        """While a run writes on SQLite: a larger page cache (restored after: the connection
        persists) and, for a big staged run, the lookup indexes dropped until :meth:`finish`."""
        from kehu.dataops.services.importing import deferred_indexes
        from kehu.dataops.services.importing.customer_writes import (
            SQLITE_IMPORT_CACHE_KIB,
            SQLITE_IMPORT_MMAP_BYTES,
        )

        if context.vendor != "sqlite" or context.dry_run:
            yield
            return
        job = context.job
        deferring = context.staged and deferred_indexes.should_defer(
            (job.rows_total or 0) - job.rows_processed
        )
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA cache_size")
            previous_cache = int(cursor.fetchone()[0])
            cursor.execute("PRAGMA mmap_size")
            # An in-memory database (the tests') has no memory map to size.
            mmap_row = cursor.fetchone()
            previous_mmap = int(mmap_row[0]) if mmap_row else None
            cursor.execute(f"PRAGMA cache_size = {-SQLITE_IMPORT_CACHE_KIB}")
            if previous_mmap is not None:
                # Without the random-key indexes the writes append: the map would only add its
                # pages to the process's memory, which the key arrays need.
                mmap_bytes = 0 if deferring else min(previous_mmap, SQLITE_IMPORT_MMAP_BYTES)
                cursor.execute(f"PRAGMA mmap_size = {mmap_bytes}")
        try:
            if deferring:
                keys = deferred_indexes.MatchKeys()
                with connection.cursor() as cursor:
                    keys.start(cursor)
                deferred_indexes.defer_indexes(job)
                context.cache["match_keys"] = keys
                del keys  # finish() frees the arrays before the index sorts need memory
            yield
        finally:
            context.cache.pop("match_keys", None)
            # Normally already done by finish(); here for a run that stops on an error, whose
            # own error must not be hidden: if the database refuses now, the job's record of the
            # indexes stays for the next run or migrate.
            with contextlib.suppress(DatabaseError):
                deferred_indexes.restore_deferred_indexes()
            with connection.cursor() as cursor:
                cursor.execute(f"PRAGMA cache_size = {previous_cache}")
                if previous_mmap is not None:
                    cursor.execute(f"PRAGMA mmap_size = {previous_mmap}")

    def finish(self, context: ImportContext) -> None:
        """After a large load: the deferred indexes built, then the query planner told the new
        table sizes (so that it knows the indexes too)."""
        from kehu.dataops.services.importing.customer_writes import writer_for
        from kehu.dataops.services.importing.deferred_indexes import restore_deferred_indexes

        # The run's key arrays are no longer needed: freed before the index sorts take memory.
        context.cache.pop("match_keys", None)
        restore_deferred_indexes()
        writer_for(context).refresh_statistics(context.job.rows_created)


def validate_customer(
    values: dict[str, str], state: CustomerState
) -> tuple[tuple[Any, ...] | None, list[CellError]]:
    """The validated row and its stored form, or the reasons it was refused (pure: no database)."""
    cell_errors: list[CellError] = []

    def refuse(key: str, reason: str) -> None:
        cell_errors.append(CellError(key, reason))

    name = " ".join(_cell(values.get("name", ""), NAME_MAX_LENGTH + 1).split())
    if not name:
        refuse("name", _("Enter the customer's name."))
    elif len(name) > NAME_MAX_LENGTH:
        refuse("name", _("At most %(count)d characters.") % {"count": NAME_MAX_LENGTH})

    gender = ""
    if text := values.get("gender", ""):
        folded = text.strip().lower()
        if folded in _MALE:
            gender = _MALE_VALUE
        elif folded in _FEMALE:
            gender = _FEMALE_VALUE
        elif folded not in ("未知", "unknown", "-", "保密"):
            refuse("gender", _("“%(value)s” is not a gender (男/女, M/F).") % {"value": text})

    birthday: dt.date | None = None
    if text := values.get("birthday", ""):
        try:
            parsed = parse_date(text)
        except ValueError as error:
            refuse("birthday", str(error))
        else:
            if parsed > state.today:
                refuse("birthday", _("The birthday is in the future."))
            elif parsed < EARLIEST_BIRTHDAY:
                refuse("birthday", _("The birthday is before 1900."))
            else:
                birthday = parsed

    id_number = None
    if text := values.get("id_number", ""):
        try:
            id_number = parse_id_number(text, field="id_number", today=state.today)
        except ValidationFailed as error:
            refuse("id_number", _reason(error))
        else:
            for reason in id_number_consistency_errors(id_number, birthday=birthday, gender=gender or None):
                refuse("id_number", reason)
            birthday = birthday or id_number.birthday
            gender = gender or id_number.gender

    phones: list[PhoneRow] = []
    if text := values.get("phones", ""):
        seen: set[str] = set()
        parts = [part for part in _PHONE_SPLIT.split(text) if part.strip()]
        if len(parts) > MAX_PHONES:
            refuse("phones", _("At most %(count)d phone numbers.") % {"count": MAX_PHONES})
        for part in parts[:MAX_PHONES]:
            try:
                phone = normalise_phone(part, field="phones")
            except ValidationFailed as error:
                refuse(
                    "phones", _("“%(value)s”: %(reason)s") % {"value": part.strip(), "reason": _reason(error)}
                )
                continue
            if phone.e164 not in seen:
                seen.add(phone.e164)
                kind = phone.kind if phone.kind in ("mobile", "landline") else "other"
                phones.append(PhoneRow(phone.e164, phone.last4, kind, phone.extension[:10]))

    emails: list[EmailRow] = []
    if text := values.get("emails", ""):
        seen_addresses: set[str] = set()
        parts = [part for part in _EMAIL_SPLIT.split(text) if part]
        if len(parts) > MAX_EMAILS:
            refuse("emails", _("At most %(count)d email addresses.") % {"count": MAX_EMAILS})
        for part in parts[:MAX_EMAILS]:
            try:
                address = normalise_email(part, field="emails").lower()
            except ValidationFailed as error:
                refuse("emails", _("“%(value)s”: %(reason)s") % {"value": part, "reason": _reason(error)})
                continue
            if address not in seen_addresses:
                seen_addresses.add(address)
                emails.append(EmailRow(address))

    addresses: list[AddressRow] = []
    address_parts = {
        key: _cell(values.get(key, ""), limit)
        for key, limit in (("province", 30), ("city", 30), ("district", 30), ("street", 200), ("postcode", 6))
    }
    postcode = address_parts["postcode"]
    if postcode and not (len(postcode) == POSTCODE_LENGTH and postcode.isdigit()):
        refuse("postcode", _("A postcode has 6 digits."))
    elif any(address_parts[key] for key in ("province", "city", "district", "street")):
        addresses.append(AddressRow(**address_parts))

    tags: list[str] = []
    if text := values.get("tags", ""):
        for part in text.translate(_TAG_SEPARATORS).split(","):
            tag = " ".join(_cell(part, TAG_MAX_LENGTH + 1).split())
            if len(tag) > TAG_MAX_LENGTH:
                refuse("tags", _("A tag has at most %(count)d characters.") % {"count": TAG_MAX_LENGTH})
            elif tag and tag not in tags:
                tags.append(tag)
        if len(tags) > MAX_TAGS:
            refuse("tags", _("At most %(count)d tags.") % {"count": MAX_TAGS})

    source = state.default_source
    if text := values.get("source", ""):
        source = state.sources.get(text.strip().lower(), "")
        if not source:
            refuse("source", _("“%(value)s” is not one of the sources.") % {"value": text})
    status = _ACTIVE
    if text := values.get("status", ""):
        status = state.statuses.get(text.strip().lower(), "")
        if not status:
            refuse("status", _("“%(value)s” is not one of the statuses.") % {"value": text})

    external_id = _cell(values.get("external_id", ""), 65)
    if len(external_id) > 64:  # noqa: PLR2004 -- the column's length
        refuse("external_id", _("At most %(count)d characters.") % {"count": 64})
    notes = _cell(values.get("notes", ""), 5000)

    consent: bool | None = None
    if text := values.get("marketing_consent", ""):
        try:
            consent = parse_bool(text)
        except ValueError as error:
            refuse("marketing_consent", str(error))

    custom = _custom_values(values, state, refuse) if state.definitions else {}
    if cell_errors:
        return None, cell_errors

    row = CustomerRow(
        name=name,
        gender=gender,
        birthday=birthday,
        id_number=id_number.number if id_number else None,
        phones=tuple(phones),
        emails=tuple(emails),
        addresses=tuple(addresses),
        tags=tuple(tags),
        owner_id=state.owner_id,
        department_id=state.department_id,
        source=source,
        external_id=external_id,
        status=status,
        notes=notes,
        custom_fields=custom,
        marketing_consent=consent,
        created_by_id=state.created_by_id,
    )
    # Only an update of an existing customer reads the clean row and the given keys.
    row_data: tuple[Any, ...] = ()
    given: tuple[str, ...] = ()
    if state.keep_values:
        row_data = (
            name,
            gender,
            birthday,
            row.id_number,
            tuple((phone.number, phone.last4, phone.kind, phone.extension) for phone in phones),
            tuple(email.address for email in emails),
            tuple(
                (address.province, address.city, address.district, address.street, address.postcode)
                for address in addresses
            ),
            row.tags,
            state.owner_id,
            state.department_id,
            source,
            external_id,
            status,
            notes,
            custom,
            consent,
            state.created_by_id,
        )
        given = tuple(key for key, value in values.items() if value)
    # A plain tuple in ValidatedCustomer's field order: pickled several times faster than the
    # named tuple; write_customers wraps it again. Until prepare_customers fills them, the
    # prepared parts are the row itself and empty tuples.
    return (
        row_data,
        row,
        (),
        (),
        (),
        row.tags,
        None,
        given,
    ), []


def prepare_customers(values: list[tuple[Any, ...]], state: CustomerState) -> list[tuple[Any, ...]]:
    """``validate_customer``'s values with their stored form (ciphertexts, blind indexes, pinyin).

    Prepared together rather than row by row: the preparer encrypts a column at a time, and
    OpenSSL interleaved with a row's Python validation ran at half its speed.
    """
    return prepared_values(values, state.preparer.prepare([value[1] for value in values]))


def prepared_values(values: list[tuple[Any, ...]], batch: PreparedBatch) -> list[tuple[Any, ...]]:
    """``values`` completed with their entries in ``batch``, their preparer's batch."""
    # Each row's phones, emails and addresses, in ValidatedCustomer's form: offset 0, its own.
    contacts: list[list[list[tuple[Any, ...]]]] = [[[], [], []] for _value in values]
    for kind, entries in enumerate((batch.phones, batch.emails, batch.addresses)):
        for entry in entries:
            contacts[entry[0]][kind].append((0, *entry[1:]))
    events: list[tuple[Any, ...] | None] = [None] * len(values)
    for entry in batch.events:
        events[entry[0]] = (0, *entry[1:])
    prepared = []
    for offset, (value, customer) in enumerate(zip(values, batch.customers, strict=True)):
        row_data, _row, _phones, _emails, _addresses, tags, _event, given = value
        prepared.append((row_data, customer, *contacts[offset], tags, events[offset], given))
    return prepared


def _custom_values(values: dict[str, str], state: CustomerState, refuse: Any) -> dict[str, Any]:
    """The row's custom fields, cleaned by the custom-field validators; refusals go to ``refuse``."""
    custom: dict[str, Any] = {}
    errors = Errors()
    for definition in state.definitions:
        raw: Any = values.get(f"{CUSTOM_FIELD_PREFIX}{definition.key}", "")
        if not raw:
            if definition.is_required:
                errors.add(f"custom_fields.{definition.key}", _("This field is required."))
            continue
        raw = _custom_cell(definition, raw, refuse)
        if raw is None:
            continue
        # The validator takes a model instance; _Definition has the attributes it reads.
        cleaned = clean_custom_value(definition, raw, errors)  # type: ignore[arg-type]
        if cleaned is not None and f"custom_fields.{definition.key}" not in errors.by_field:
            custom[definition.key] = cleaned
    for key, reasons in errors.by_field.items():
        column = _column_for(key)
        for reason in reasons:
            refuse(column, reason)
    return custom


def _custom_cell(definition: _Definition, raw: str, refuse: Any) -> Any:
    """Spreadsheet spellings of dates and yes/no turned into what the custom validators take."""

    key = f"{CUSTOM_FIELD_PREFIX}{definition.key}"
    if definition.kind == CustomFieldKind.DATE:
        try:
            return parse_date(raw).isoformat()
        except ValueError as error:
            refuse(key, str(error))
            return None
    if definition.kind == CustomFieldKind.BOOLEAN:
        try:
            return parse_bool(raw)
        except ValueError as error:
            refuse(key, str(error))
            return None
    return raw


HANDLER = register_handler(CustomerHandler())
