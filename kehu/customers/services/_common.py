"""What the customer use cases share: validation of a whole record, duplicate checks, history and timeline writes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from kehu.accounts.models import Department, User
from kehu.core.audit import audit_record
from kehu.core.context import current_context
from kehu.core.crypto import blind_index
from kehu.core.errors import Conflict, PermissionDeniedError
from kehu.core.masking import mask_value
from kehu.core.pinyin import name_pinyin, search_keys
from kehu.core.scopes import scope_filter
from kehu.customers.models import (
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
    EventKind,
    Gender,
    Source,
    Status,
    Tag,
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
