"""Every write to customer records: one use case per function, one transaction each.

All surfaces (API, pages, CLI, jobs, imports) come through here, so validation, duplicate
checks, optimistic locking, field history, the timeline and the audit log are the same for
all of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from kehu.accounts.models import Department, User
from kehu.core.audit import audit_record
from kehu.core.context import current_context
from kehu.core.crypto import blind_index
from kehu.core.errors import Conflict, NotFound, PermissionDeniedError, ValidationFailed
from kehu.core.masking import mask_value
from kehu.core.permissions import ensure_permitted
from kehu.core.pinyin import name_pinyin, search_keys
from kehu.core.scopes import scope_filter
from kehu.core.sequences import reserve_numbers
from kehu.customers import signals
from kehu.customers.models import (
    CODE_SEQUENCE,
    EMAIL_INDEX_PURPOSE,
    ID_NUMBER_INDEX_PURPOSE,
    PHONE_INDEX_PURPOSE,
    Customer,
    CustomerAddress,
    CustomerChange,
    CustomerEmail,
    CustomerEvent,
    CustomerPhone,
    CustomerTag,
    CustomFieldDefinition,
    CustomFieldKind,
    EventKind,
    Gender,
    SavedView,
    Source,
    Status,
    Tag,
    format_code,
)
from kehu.customers.validation import (
    AddressInput,
    EmailInput,
    Errors,
    PhoneInput,
    check_id_consistency,
    clean_addresses,
    clean_birthday,
    clean_choice,
    clean_custom_fields,
    clean_emails,
    clean_id_number,
    clean_lunar_birthday,
    clean_name,
    clean_phones,
    clean_tags,
    clean_text,
    field_labels,
    json_value,
)

RESOURCE = "customers"
BULK_LIMIT = 1000
# Fields a create or update may carry; anything else is refused rather than ignored.
WRITABLE_FIELDS = frozenset(
    {
        "name",
        "gender",
        "birthday",
        "lunar_birthday",
        "id_number",
        "source",
        "external_id",
        "status",
        "tags",
        "owner_id",
        "department_id",
        "notes",
        "custom_fields",
        "phones",
        "emails",
        "addresses",
        "marketing_consent",
    }
)
SENSITIVE_FIELDS = {"phones": "phone", "emails": "email", "id_number": "id_number", "addresses": "street"}


class DuplicateCustomer(Conflict):
    """The phone, email or ID number already belongs to another customer."""

    code = "duplicate_customer"


class StaleVersion(Conflict):
    """The record changed since the caller read it."""

    code = "stale_version"


@dataclass(frozen=True)
class CleanCustomer:
    """A validated customer, every value normalised; only the keys that were given are set."""

    values: dict[str, Any]
    phones: list[PhoneInput] | None = None
    emails: list[EmailInput] | None = None
    addresses: list[AddressInput] | None = None
    tags: list[str] | None = None


@dataclass
class BulkResult:
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)


# --- validation -------------------------------------------------------------------------------
def _custom_field_definitions() -> list[CustomFieldDefinition]:
    return list(CustomFieldDefinition.objects.filter(is_active=True))


def clean_customer(
    data: Mapping[str, Any], *, current: Customer | None = None, actor: User | None = None
) -> CleanCustomer:
    """Validate ``data`` (all fields on create, the given ones on update) and normalise it.

    Refuses with one ValidationFailed naming every bad field; consistency between the ID
    number and the birthday/gender is checked against the values the record will have.
    """
    errors = Errors()
    unknown = sorted(set(data) - WRITABLE_FIELDS)
    for key in unknown:
        errors.add(key, _("There is no such field."), label=key)
    is_create = current is None
    values: dict[str, Any] = {}
    if is_create or "name" in data:
        values["name"] = clean_name(data.get("name"), errors)
    for key, choices in (("gender", Gender), ("source", Source), ("status", Status)):
        if key in data:
            values[key] = clean_choice(
                data[key] if data[key] is not None else "", key=key, choices=choices, errors=errors
            )
    if "birthday" in data:
        values["birthday"] = clean_birthday(data["birthday"], errors)
    if "lunar_birthday" in data:
        values["lunar_birthday"] = clean_lunar_birthday(data["lunar_birthday"], errors)
    id_number = None
    if "id_number" in data:
        id_number = clean_id_number(data["id_number"], errors)
        values["id_number"] = id_number.number if id_number else None
    if "external_id" in data:
        values["external_id"] = clean_text(data["external_id"], max_length=64)
        if len(values["external_id"]) > 64:
            errors.add(
                "external_id",
                _("At most %(count)d characters.") % {"count": 64},
                label=field_labels()["external_id"],
            )
    if "notes" in data:
        values["notes"] = clean_text(data["notes"], max_length=5000)[:5000]
    if "marketing_consent" in data:
        consent = data["marketing_consent"]
        values["marketing_consent"] = None if consent is None else bool(consent)
    if "owner_id" in data:
        values["owner_id"] = _clean_owner(data["owner_id"], errors)
    if "department_id" in data:
        values["department_id"] = _clean_department(data["department_id"], errors)
    if "custom_fields" in data or is_create:
        values["custom_fields"] = clean_custom_fields(
            data.get("custom_fields"),
            _custom_field_definitions(),
            errors,
            current=current.custom_fields if current is not None else None,
            require_all=is_create,
        )
    phones = clean_phones(data["phones"], errors) if "phones" in data else None
    emails = clean_emails(data["emails"], errors) if "emails" in data else None
    addresses = clean_addresses(data["addresses"], errors) if "addresses" in data else None
    tags = clean_tags(data["tags"], errors) if "tags" in data else None

    # The ID number speaks for birthday and gender: it fills them in when they are missing
    # and must agree with them when they are given.
    birthday = values.get("birthday", current.birthday if current else None)
    gender = values.get("gender", current.gender if current else "")
    if id_number is not None and "id_number" not in errors.by_field:
        check_id_consistency(id_number, birthday=birthday, gender=gender, errors=errors)
        if birthday is None and "birthday" not in errors.by_field:
            values["birthday"] = id_number.birthday
        if not gender and "gender" not in errors.by_field:
            values["gender"] = id_number.gender
    elif (
        "id_number" not in data
        and current is not None
        and current.id_number
        and ("birthday" in values or "gender" in values)
    ):
        stored = clean_id_number(current.id_number, Errors())
        check_id_consistency(stored, birthday=birthday, gender=gender, errors=errors)
    errors.raise_if_any()
    return CleanCustomer(values=values, phones=phones, emails=emails, addresses=addresses, tags=tags)


def _clean_owner(raw: Any, errors: Errors) -> int | None:
    if raw in (None, ""):
        return None
    try:
        owner_id = int(raw)
    except (TypeError, ValueError):
        owner_id = -1
    if not User.objects.filter(pk=owner_id, is_active=True).exists():
        errors.add("owner_id", _("No active user has this id."), label=field_labels()["owner"])
        return None
    return owner_id


def _clean_department(raw: Any, errors: Errors) -> int | None:
    if raw in (None, ""):
        return None
    try:
        department_id = int(raw)
    except (TypeError, ValueError):
        department_id = -1
    if not Department.objects.filter(pk=department_id).exists():
        errors.add("department_id", _("No department has this id."), label=field_labels()["department"])
        return None
    return department_id


# --- duplicates -------------------------------------------------------------------------------
def find_duplicates(
    *,
    phones: Iterable[str] = (),
    emails: Iterable[str] = (),
    id_number: str | None = None,
    exclude_id: int | None = None,
) -> list[tuple[str, str]]:
    """Live customers already holding one of these normalised values: [(code, what matched)]."""
    found: dict[str, str] = {}
    phone_indexes = [blind_index(phone, purpose=PHONE_INDEX_PURPOSE) for phone in phones]
    email_indexes = [blind_index(email, purpose=EMAIL_INDEX_PURPOSE) for email in emails]
    live = Q(customer__deleted_at__isnull=True)
    if exclude_id is not None:
        live &= ~Q(customer_id=exclude_id)
    if phone_indexes:
        for code in CustomerPhone.objects.filter(live, number_index__in=phone_indexes).values_list(
            "customer__code", flat=True
        )[:5]:
            found.setdefault(code, "phone")
    if email_indexes:
        for code in CustomerEmail.objects.filter(live, address_index__in=email_indexes).values_list(
            "customer__code", flat=True
        )[:5]:
            found.setdefault(code, "email")
    if id_number:
        customers = Customer.objects.filter(
            id_number_index=blind_index(id_number, purpose=ID_NUMBER_INDEX_PURPOSE)
        )
        if exclude_id is not None:
            customers = customers.exclude(pk=exclude_id)
        for code in customers.values_list("code", flat=True)[:5]:
            found.setdefault(code, "id_number")
    return sorted(found.items())


def _refuse_duplicates(clean: CleanCustomer, *, current: Customer | None, allow_duplicate: bool) -> None:
    if allow_duplicate:
        return
    old_phones = {phone.number for phone in current.phones.all()} if current else set()
    old_emails = {email.address for email in current.emails.all()} if current else set()
    new_phones = [phone.e164 for phone in clean.phones or [] if phone.e164 not in old_phones]
    new_emails = [email.address for email in clean.emails or [] if email.address not in old_emails]
    id_number = clean.values.get("id_number")
    if current is not None and id_number == current.id_number:
        id_number = None
    matches = find_duplicates(
        phones=new_phones, emails=new_emails, id_number=id_number, exclude_id=current.pk if current else None
    )
    if not matches:
        return
    code, matched = matches[0]
    what = {"phone": _("phone number"), "email": _("email address"), "id_number": _("ID number")}[matched]
    raise DuplicateCustomer(
        _("Customer %(code)s already has this %(what)s. Open that record, or save anyway if they share it.")
        % {"code": code, "what": what},
        fields={
            {"phone": "phones", "email": "emails", "id_number": "id_number"}[matched]: [_("Already in use.")]
        },
        existing_code=code,
        existing_codes=[match_code for match_code, _matched in matches],
        matched=matched,
    )


# --- helpers ----------------------------------------------------------------------------------
def _apply_values(customer: Customer, values: Mapping[str, Any]) -> None:
    for key, value in values.items():
        if key == "lunar_birthday":
            month, day, is_leap = value if value else (None, None, False)
            customer.lunar_birthday_month = month
            customer.lunar_birthday_day = day
            customer.lunar_birthday_is_leap_month = is_leap
        elif key == "marketing_consent":
            if customer.marketing_consent != value:
                customer.consent_updated_at = timezone.now()
            customer.marketing_consent = value
        else:
            setattr(customer, key, value)
    if "name" in values:
        reading = name_pinyin(customer.name)
        customer.name_pinyin = reading.full[:200]
        customer.name_initials = reading.initials[:50]
        customer.search_pinyin = " ".join(sorted(search_keys(customer.name)))[:400]
    if "birthday" in values:
        birthday = customer.birthday
        customer.birthday_month_day = birthday.month * 100 + birthday.day if birthday else None
    if "id_number" in values:
        number = customer.id_number
        customer.id_number_index = blind_index(number, purpose=ID_NUMBER_INDEX_PURPOSE) if number else ""


def _ensure_within_scope(actor: User | None, customer: Customer) -> None:
    """Refuse a write that would leave the record outside the actor's own data scope.

    Checked inside the write's transaction, so the refusal rolls it back: a clerk cannot
    hand a customer to another store and lose sight of it by accident.
    """
    if actor is None:
        return
    condition = scope_filter(actor, Customer, RESOURCE)
    if condition is None or not Customer.all_objects.filter(condition, pk=customer.pk).exists():
        raise PermissionDeniedError(_("The result would be outside your data scope."))


def _actor_label(actor: User | None) -> str:
    return actor.get_username()[:150] if actor is not None else ""


def _new_event(
    customer: Customer, *, actor: User | None, kind: str, data: dict[str, Any] | None = None
) -> CustomerEvent:
    return CustomerEvent.objects.create(
        customer=customer,
        kind=kind,
        actor=actor,
        actor_label=_actor_label(actor),
        channel=current_context().channel or "",
        data=data or {},
    )


def _address_text(address: AddressInput | CustomerAddress) -> str:
    parts = [address.province, address.city, address.district, address.street]
    text = " ".join(part for part in parts if part)
    return f"{text} {address.postcode}".strip() if address.postcode else text


def _snapshot(customer: Customer) -> dict[str, Any]:
    """Every field as history and audit see it (plain; masked later for who may not see it)."""
    return {
        "name": customer.name,
        "gender": customer.gender,
        "birthday": customer.birthday.isoformat() if customer.birthday else None,
        "lunar_birthday": (
            {
                "month": customer.lunar_birthday_month,
                "day": customer.lunar_birthday_day,
                "is_leap_month": customer.lunar_birthday_is_leap_month,
            }
            if customer.lunar_birthday_month
            else None
        ),
        "id_number": customer.id_number or None,
        "source": customer.source,
        "external_id": customer.external_id,
        "status": customer.status,
        "owner_id": customer.owner_id,
        "department_id": customer.department_id,
        "notes": customer.notes,
        "marketing_consent": customer.marketing_consent,
        **{f"custom_fields.{key}": value for key, value in sorted(customer.custom_fields.items())},
        "tags": sorted(customer.tags.values_list("name", flat=True)),
        "phones": [phone.number for phone in customer.phones.all()],
        "emails": [email.address for email in customer.emails.all()],
        "addresses": [_address_text(address) for address in customer.addresses.all()],
    }


def _masked_for_audit(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    masked: dict[str, Any] = {}
    for key, value in snapshot.items():
        kind = SENSITIVE_FIELDS.get(key)
        if kind is None or value is None:
            masked[key] = value
        elif isinstance(value, list):
            masked[key] = [mask_value(kind, item) for item in value]
        else:
            masked[key] = mask_value(kind, str(value))
    return masked


def _replace_phones(customer: Customer, phones: list[PhoneInput]) -> None:
    existing = {phone.number_index: phone for phone in customer.phones.all()}
    keep: set[int] = set()
    for position, phone in enumerate(phones):
        index = blind_index(phone.e164, purpose=PHONE_INDEX_PURPOSE)
        row = existing.get(index) or CustomerPhone(customer=customer, number=phone.e164, number_index=index)
        row.last4, row.kind, row.extension = phone.last4, phone.kind, phone.extension
        row.label, row.is_primary, row.position = phone.label, phone.is_primary, position
        row.save()
        keep.add(row.pk)
    customer.phones.exclude(pk__in=keep).delete()


def _replace_emails(customer: Customer, emails: list[EmailInput]) -> None:
    existing = {email.address_index: email for email in customer.emails.all()}
    keep: set[int] = set()
    for position, email in enumerate(emails):
        index = blind_index(email.address, purpose=EMAIL_INDEX_PURPOSE)
        row = existing.get(index) or CustomerEmail(
            customer=customer, address=email.address, address_index=index
        )
        row.label, row.is_primary, row.position = email.label, email.is_primary, position
        row.save()
        keep.add(row.pk)
    customer.emails.exclude(pk__in=keep).delete()


def _replace_addresses(customer: Customer, addresses: list[AddressInput]) -> None:
    existing = list(customer.addresses.all())
    for position, address in enumerate(addresses):
        row = existing[position] if position < len(existing) else CustomerAddress(customer=customer)
        for key in ("province", "city", "district", "street", "postcode", "label", "is_primary"):
            setattr(row, key, getattr(address, key))
        row.position = position
        row.save()
    for row in existing[len(addresses) :]:
        row.delete()


def _set_tags(customer: Customer, names: list[str]) -> None:
    tags = [_tag_named(name) for name in names]
    CustomerTag.objects.filter(customer=customer).exclude(tag__in=tags).delete()
    present = set(CustomerTag.objects.filter(customer=customer).values_list("tag_id", flat=True))
    CustomerTag.objects.bulk_create(
        [CustomerTag(customer=customer, tag=tag) for tag in tags if tag.pk not in present]
    )


def _tag_named(name: str) -> Tag:
    tag = Tag.objects.filter(name=name).first()
    if tag is not None:
        return tag
    try:
        with transaction.atomic():
            return Tag.objects.create(name=name)
    except IntegrityError:
        # Another writer created the same tag a moment ago.
        return Tag.objects.get(name=name)


def _record_changes(
    customer: Customer, *, actor: User | None, before: Mapping[str, Any], after: Mapping[str, Any], kind: str
) -> CustomerEvent | None:
    changed = [key for key in sorted(set(before) | set(after)) if before.get(key) != after.get(key)]
    if not changed:
        return None
    event = _new_event(customer, actor=actor, kind=kind, data={"fields": changed})
    CustomerChange.objects.bulk_create(
        [
            CustomerChange(
                event=event,
                customer=customer,
                field=key,
                mask_kind=SENSITIVE_FIELDS.get(key, ""),
                before=json_value(before.get(key)),
                after=json_value(after.get(key)),
            )
            for key in changed
        ]
    )
    audit_record(
        actor=actor,
        action="customer.update" if kind == EventKind.UPDATED else f"customer.{kind}",
        target=customer,
        before=_masked_for_audit({key: before.get(key) for key in changed}),
        after=_masked_for_audit({key: after.get(key) for key in changed}),
    )
    return event


def _on_commit_send(signal: Any, **kwargs: Any) -> None:
    transaction.on_commit(lambda: signal.send(sender=Customer, **kwargs))


# --- use cases --------------------------------------------------------------------------------
@transaction.atomic
def customer_create(
    *, actor: User | None, data: Mapping[str, Any], allow_duplicate: bool = False
) -> Customer:
    """Create a customer with contacts, tags and custom fields; refuses duplicates unless allowed.

    The owner defaults to the actor and the department to the actor's; the result must be
    inside the actor's data scope.
    """
    ensure_permitted(actor, "customers.create")
    clean = clean_customer(data, actor=actor)
    _refuse_duplicates(clean, current=None, allow_duplicate=allow_duplicate)
    values = dict(clean.values)
    if actor is not None:
        values.setdefault("owner_id", actor.pk)
        values.setdefault("department_id", actor.department_id)
    now = timezone.now()
    customer = Customer(created_by=actor, created_at=now, updated_at=now)
    _apply_values(customer, {"name": values.pop("name"), **values})
    customer.code = format_code(reserve_numbers(CODE_SEQUENCE)[0])
    try:
        with transaction.atomic():
            customer.save(force_insert=True)
    except IntegrityError as error:
        if customer.external_id and "external" in str(error).lower():
            raise ValidationFailed.for_field(
                "external_id",
                _("Another customer from this source already has this external id."),
                label=field_labels()["external_id"],
            ) from None
        raise
    _replace_phones(customer, clean.phones or [])
    _replace_emails(customer, clean.emails or [])
    _replace_addresses(customer, clean.addresses or [])
    _set_tags(customer, clean.tags or [])
    _ensure_within_scope(actor, customer)
    _new_event(
        customer, actor=actor, kind=EventKind.CREATED, data={"code": customer.code, "name": customer.name}
    )
    audit_record(
        actor=actor, action="customer.create", target=customer, after=_masked_for_audit(_snapshot(customer))
    )
    _on_commit_send(signals.customer_created, customer_id=customer.pk)
    return customer


@transaction.atomic
def customer_update(
    *,
    actor: User | None,
    customer: Customer,
    data: Mapping[str, Any],
    expected_version: int | None,
    allow_duplicate: bool = False,
) -> Customer:
    """Change the given fields; ``expected_version`` must be the version the caller read.

    A stale version is refused (409) instead of silently overwriting someone else's change.
    ``None`` skips the check and is for trusted internal callers only (approvals, jobs).
    """
    ensure_permitted(actor, "customers.change")
    locked = _lock(customer.pk)
    if expected_version is not None and locked.version != expected_version:
        raise StaleVersion(
            _(
                "Someone else changed this customer (now version %(current)d, you read %(read)d). Reload and try again."
            )
            % {"current": locked.version, "read": expected_version},
            current_version=locked.version,
        )
    clean = clean_customer(data, current=locked, actor=actor)
    _refuse_duplicates(clean, current=locked, allow_duplicate=allow_duplicate)
    before = _snapshot(locked)
    _apply_values(locked, clean.values)
    if clean.phones is not None:
        _replace_phones(locked, clean.phones)
    if clean.emails is not None:
        _replace_emails(locked, clean.emails)
    if clean.addresses is not None:
        _replace_addresses(locked, clean.addresses)
    if clean.tags is not None:
        _set_tags(locked, clean.tags)
    after = _snapshot(locked)
    if before == after:
        return locked
    locked.version += 1
    locked.updated_at = timezone.now()
    try:
        with transaction.atomic():
            locked.save()
    except IntegrityError:
        raise ValidationFailed.for_field(
            "external_id",
            _("Another customer from this source already has this external id."),
            label=field_labels()["external_id"],
        ) from None
    _ensure_within_scope(actor, locked)
    _record_changes(locked, actor=actor, before=before, after=after, kind=EventKind.UPDATED)
    _on_commit_send(
        signals.customer_updated,
        customer_id=locked.pk,
        fields=sorted(k for k in after if before.get(k) != after.get(k)),
    )
    return locked


def _lock(customer_id: int) -> Customer:
    locked = Customer.objects.select_for_update().filter(pk=customer_id).first()
    if locked is None:
        raise NotFound(_("Not found."))
    return locked


@transaction.atomic
def customer_delete(*, actor: User | None, customer: Customer) -> None:
    """Soft delete: the record leaves every list and search but keeps its history."""
    ensure_permitted(actor, "customers.delete")
    locked = _lock(customer.pk)
    locked.deleted_at = timezone.now()
    locked.version += 1
    locked.save(update_fields=["deleted_at", "version"])
    _new_event(locked, actor=actor, kind=EventKind.DELETED)
    audit_record(actor=actor, action="customer.delete", target=locked)
    _on_commit_send(signals.customer_deleted, customer_id=locked.pk)


@transaction.atomic
def customer_restore(*, actor: User | None, customer: Customer) -> Customer:
    ensure_permitted(actor, "customers.delete")
    locked = Customer.all_objects.select_for_update().get(pk=customer.pk)
    if locked.deleted_at is None:
        return locked
    locked.deleted_at = None
    locked.version += 1
    locked.save(update_fields=["deleted_at", "version"])
    _new_event(locked, actor=actor, kind=EventKind.RESTORED)
    audit_record(actor=actor, action="customer.restore", target=locked)
    return locked


# Revealable field -> (the customer's related rows, the encrypted column); the ID number is on the customer.
REVEALABLE: dict[str, tuple[str, str] | None] = {
    "phone": ("phones", "number"),
    "email": ("emails", "address"),
    "street": ("addresses", "street"),
    "id_number": None,
}


@transaction.atomic
def customer_reveal(*, actor: User, customer: Customer, field: str, item_id: int | None = None) -> str:
    """The full value of one sensitive field, for a user allowed to see it; always audited."""
    ensure_permitted(actor, "customers.view_sensitive")
    if field not in REVEALABLE:
        raise ValidationFailed.for_field(
            "field", _("“%(value)s” is not one of the choices.") % {"value": field}
        )
    value: str | None = customer.id_number
    if (source := REVEALABLE[field]) is not None:
        related, column = source
        rows = getattr(customer, related).filter(
            **({"pk": item_id} if item_id is not None else {"is_primary": True})
        )
        row = rows.first()
        value = getattr(row, column) if row is not None else None
    if not value:
        raise NotFound(_("Not found."))
    _new_event(customer, actor=actor, kind=EventKind.REVEALED, data={"field": field, "item_id": item_id})
    audit_record(
        actor=actor,
        action="customer.reveal",
        target=customer,
        after={"field": field, "item_id": item_id},
    )
    return value


def _visible_customers(actor: User, ids: Sequence[int]) -> dict[int, Customer]:
    condition = scope_filter(actor, Customer, RESOURCE)
    if condition is None:
        return {}
    return {
        customer.pk: customer
        for customer in Customer.objects.select_for_update(of=("self",)).filter(condition, pk__in=ids)
    }


def _bulk_ids(customer_ids: Sequence[int]) -> list[int]:
    ids = list(dict.fromkeys(int(customer_id) for customer_id in customer_ids))
    if not ids:
        raise ValidationFailed.for_field("ids", _("Choose at least one customer."))
    if len(ids) > BULK_LIMIT:
        raise ValidationFailed.for_field(
            "ids", _("At most %(count)d customers at a time.") % {"count": BULK_LIMIT}
        )
    return ids


@transaction.atomic
def customers_bulk_tag(
    *, actor: User, customer_ids: Sequence[int], add: Sequence[str] = (), remove: Sequence[str] = ()
) -> BulkResult:
    """Add and remove tags on many customers; ids outside the actor's scope are refused one by one."""
    ensure_permitted(actor, "customers.change")
    errors = Errors()
    to_add, to_remove = clean_tags(list(add), errors), clean_tags(list(remove), errors)
    errors.raise_if_any()
    if not to_add and not to_remove:
        raise ValidationFailed.for_field("tags", _("Choose tags to add or remove."))
    ids = _bulk_ids(customer_ids)
    visible = _visible_customers(actor, ids)
    result = BulkResult()
    for customer_id in ids:
        customer = visible.get(customer_id)
        if customer is None:
            result.refused[str(customer_id)] = _("Not found.")
            continue
        before = sorted(customer.tags.values_list("name", flat=True))
        after = sorted((set(before) | set(to_add)) - set(to_remove))
        if after == before:
            result.unchanged.append(customer.code)
            continue
        _set_tags(customer, after)
        Customer.all_objects.filter(pk=customer.pk).update(
            version=F("version") + 1, updated_at=timezone.now()
        )
        _record_changes(
            customer, actor=actor, before={"tags": before}, after={"tags": after}, kind=EventKind.UPDATED
        )
        result.changed.append(customer.code)
    return result


@transaction.atomic
def customers_bulk_assign(
    *,
    actor: User,
    customer_ids: Sequence[int],
    owner_id: int | None | object = None,
    department_id: int | None | object = None,
    set_owner: bool = False,
    set_department: bool = False,
) -> BulkResult:
    """Change owner and/or department of many customers, each checked against the actor's scope.

    A customer the actor cannot see is refused; one the change would move out of the actor's
    scope is refused too (and left as it was), the others are changed.
    """
    ensure_permitted(actor, "customers.change")
    if not set_owner and not set_department:
        raise ValidationFailed.for_field("owner_id", _("Choose a new owner or department."))
    errors = Errors()
    new_owner = _clean_owner(owner_id, errors) if set_owner else None
    new_department = _clean_department(department_id, errors) if set_department else None
    errors.raise_if_any()
    ids = _bulk_ids(customer_ids)
    visible = _visible_customers(actor, ids)
    result = BulkResult()
    for customer_id in ids:
        customer = visible.get(customer_id)
        if customer is None:
            result.refused[str(customer_id)] = _("Not found.")
            continue
        before = {"owner_id": customer.owner_id, "department_id": customer.department_id}
        if set_owner:
            customer.owner_id = new_owner
        if set_department:
            customer.department_id = new_department
        after = {"owner_id": customer.owner_id, "department_id": customer.department_id}
        if after == before:
            result.unchanged.append(customer.code)
            continue
        try:
            with transaction.atomic():
                customer.version += 1
                customer.updated_at = timezone.now()
                customer.save(update_fields=["owner", "department", "version", "updated_at"])
                _ensure_within_scope(actor, customer)
        except PermissionDeniedError as refusal:
            result.refused[customer.code] = refusal.message
            continue
        _record_changes(customer, actor=actor, before=before, after=after, kind=EventKind.UPDATED)
        result.changed.append(customer.code)
    return result


# --- custom field definitions -------------------------------------------------------------------
def _clean_choices(kind: str, choices: Any) -> list[dict[str, str]]:
    if kind not in (CustomFieldKind.CHOICE, CustomFieldKind.MULTI_CHOICE):
        return []
    if isinstance(choices, str):
        choices = [part for part in choices.replace("，", ",").replace("\n", ",").split(",")]
    cleaned: list[dict[str, str]] = []
    for choice in choices or []:
        value = str(choice.get("value", "") if isinstance(choice, dict) else choice).strip()[:60]
        label = str(choice.get("label", "") if isinstance(choice, dict) else "").strip()[:60] or value
        if value and value not in [existing["value"] for existing in cleaned]:
            cleaned.append({"value": value, "label": label})
    if not cleaned:
        raise ValidationFailed.for_field(
            "choices", _("A choice field needs at least one choice."), label=_("Choices")
        )
    return cleaned


@transaction.atomic
def custom_field_create(
    *,
    actor: User | None,
    key: str,
    label: str,
    kind: str,
    choices: Any = None,
    is_required: bool = False,
    help_text: str = "",
    position: int = 0,
) -> CustomFieldDefinition:
    ensure_permitted(actor, "custom_fields.create")
    errors = Errors()
    key = key.strip().lower()
    if not key or not key.replace("_", "").isalnum() or not key.isascii() or key[0].isdigit():
        errors.add(
            "key",
            _("Use lower-case letters, digits and underscores, starting with a letter."),
            label=_("Key"),
        )
    elif CustomFieldDefinition.objects.filter(key=key).exists():
        errors.add("key", _("A custom field with this key exists."), label=_("Key"))
    if kind not in CustomFieldKind.values:
        errors.add("kind", _("“%(value)s” is not one of the choices.") % {"value": kind}, label=_("Type"))
    label = clean_text(label, max_length=60)[:60]
    if not label:
        errors.add("label", _("Enter a label."), label=_("Label"))
    errors.raise_if_any()
    definition = CustomFieldDefinition.objects.create(
        key=key,
        label=label,
        kind=kind,
        choices=_clean_choices(kind, choices),
        is_required=is_required,
        help_text=clean_text(help_text, max_length=200)[:200],
        position=position,
    )
    audit_record(
        actor=actor, action="custom_field.create", target=definition, after={"key": key, "kind": kind}
    )
    return definition


@transaction.atomic
def custom_field_update(
    *,
    actor: User | None,
    definition: CustomFieldDefinition,
    label: str | None = None,
    choices: Any = None,
    is_required: bool | None = None,
    help_text: str | None = None,
    position: int | None = None,
    is_active: bool | None = None,
) -> CustomFieldDefinition:
    """Change a definition; its key and type stay, because stored values were checked against them."""
    ensure_permitted(actor, "custom_fields.change")
    locked = CustomFieldDefinition.objects.select_for_update().get(pk=definition.pk)
    before = {
        "label": locked.label,
        "choices": locked.choices,
        "is_required": locked.is_required,
        "is_active": locked.is_active,
    }
    if label is not None:
        cleaned_label = clean_text(label, max_length=60)[:60]
        if not cleaned_label:
            raise ValidationFailed.for_field("label", _("Enter a label."), label=_("Label"))
        locked.label = cleaned_label
    if choices is not None:
        locked.choices = _clean_choices(locked.kind, choices)
    if is_required is not None:
        locked.is_required = is_required
    if help_text is not None:
        locked.help_text = clean_text(help_text, max_length=200)[:200]
    if position is not None:
        locked.position = position
    if is_active is not None:
        locked.is_active = is_active
    locked.save()
    after = {
        "label": locked.label,
        "choices": locked.choices,
        "is_required": locked.is_required,
        "is_active": locked.is_active,
    }
    audit_record(actor=actor, action="custom_field.update", target=locked, before=before, after=after)
    return locked


@transaction.atomic
def custom_field_delete(*, actor: User | None, definition: CustomFieldDefinition) -> None:
    """Retire a field: it disappears from forms and filters; stored values stay in the records."""
    ensure_permitted(actor, "custom_fields.delete")
    CustomFieldDefinition.objects.filter(pk=definition.pk).update(is_active=False)
    audit_record(actor=actor, action="custom_field.delete", target=definition)


# --- saved views ------------------------------------------------------------------------------
LIST_COLUMNS = (
    "code",
    "name",
    "phone",
    "gender",
    "birthday",
    "tags",
    "owner",
    "department",
    "source",
    "status",
    "created_at",
)


@transaction.atomic
def saved_view_save(
    *,
    actor: User,
    name: str,
    filters: Mapping[str, Any],
    columns: Sequence[str] = (),
    ordering: str = "",
    is_default: bool = False,
) -> SavedView:
    """Save (or replace, by name) one of the actor's own list views."""
    ensure_permitted(actor, "customers.view")
    name = clean_text(name, max_length=60)[:60]
    if not name:
        raise ValidationFailed.for_field("name", _("Give the view a name."), label=_("Name"))
    unknown = [
        column for column in columns if column not in LIST_COLUMNS and not str(column).startswith("cf:")
    ]
    if unknown:
        raise ValidationFailed.for_field("columns", _("Unknown column: %(column)s") % {"column": unknown[0]})
    if is_default:
        SavedView.objects.filter(user=actor, is_default=True).exclude(name=name).update(is_default=False)
    view, _created = SavedView.objects.update_or_create(
        user=actor,
        name=name,
        defaults={
            "filters": dict(filters),
            "columns": list(columns),
            "ordering": ordering,
            "is_default": is_default,
        },
    )
    return view


@transaction.atomic
def saved_view_delete(*, actor: User, view: SavedView) -> None:
    if view.user_id != actor.pk:
        raise NotFound(_("Not found."))
    view.delete()
