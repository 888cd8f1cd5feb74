"""Self-service update links: a customer corrects their own contact details and birthday.

Staff create a link; its URL carries a random secret (only the secret's SHA-256 is stored) and
a signature over the link id and the secret, so a tampered or foreign token is refused before
the database is asked. A link expires, is used once, and is revoked by a newer one for the
same customer. What the customer sends is validated exactly like a staff edit, stored
encrypted, and applied at once or after a member of staff approves it
(``settings.SELF_SERVICE_APPROVAL``); either way the change goes through
``services.customer_update``, so history, timeline and audit are those of any other edit.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import segno
from django.conf import settings
from django.core import signing
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from kehu.accounts.models import User
from kehu.core.audit import audit_record
from kehu.core.context import RequestContext, current_context, reset_context, set_context
from kehu.core.errors import Conflict, DomainError, NotFound, ValidationFailed
from kehu.core.lunar import LunarDate, format_lunar
from kehu.core.masking import mask_address, mask_email, mask_phone
from kehu.core.permissions import ensure_permitted
from kehu.core.phones import normalise_phone
from kehu.customers.models import (
    Customer,
    CustomerEvent,
    EventKind,
    SelfServiceLink,
    SelfServiceSubmission,
    SubmissionStatus,
)
from kehu.customers.selectors import can_view_sensitive, customers_visible_to
from kehu.customers.services import CleanCustomer, clean_customer, customer_update
from kehu.customers.validation import Errors, field_labels

# What a customer may change of their own record; everything else stays with staff.
SELF_SERVICE_DATA_FIELDS = ("phones", "emails", "addresses", "birthday", "lunar_birthday")
SELF_SERVICE_FIELDS = (*SELF_SERVICE_DATA_FIELDS, "marketing_consent")
APPROVAL_REQUIRED = "required"
APPROVAL_AUTO = "auto"
CHANNEL = "self_service"
REJECT_REASON_MAX_LENGTH = 500
# A token is "<link id>.<secret>.<timestamp>.<signature>"; anything much longer is not ours.
TOKEN_MAX_LENGTH = 200
_SIGNING_SALT = "kehu.customers.selfservice.link"
_LINK_ID = re.compile(r"[0-9]{1,18}")


class LinkRefused(DomainError):
    """The link cannot be used: ``reason`` is "invalid", "expired", "used" or "revoked"."""

    code = "self_service_link_refused"
    status = 410

    def __init__(self, reason: str) -> None:
        messages = {
            "invalid": _("This link is not valid. Check that you copied all of it, or ask us for a new one."),
            "expired": _("This link has expired. Please ask us for a new one."),
            "used": _(
                "This link has already been used. Thank you — please ask us for a new one to make more changes."
            ),
            "revoked": _(
                "This link has been replaced by a newer one. Please use the latest link we sent you."
            ),
        }
        super().__init__(messages[reason], reason=reason)
        self.reason = reason


@dataclass(frozen=True)
class OpenedLink:
    """A usable link and the details its customer may correct, in plain (it is their own data)."""

    link: SelfServiceLink
    customer: Customer
    details: dict[str, Any]


@dataclass(frozen=True)
class ProposedChange:
    """One field of a submission as a reviewer sees it: before → after, masked unless allowed."""

    field: str
    label: str
    before: list[str]
    after: list[str]


# --- tokens -----------------------------------------------------------------------------------
def _signer() -> signing.TimestampSigner:
    # "." never occurs in token_urlsafe output, so it separates id, secret, time and signature.
    return signing.TimestampSigner(salt=_SIGNING_SALT, sep=".")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _parse_token(token: str) -> tuple[int, str]:
    """The link id and secret of a correctly signed, unexpired token; refused otherwise."""
    if not token or len(token) > TOKEN_MAX_LENGTH:
        raise LinkRefused("invalid")
    try:
        value = _signer().unsign(token, max_age=dt.timedelta(hours=settings.SELF_SERVICE_LINK_HOURS))
    except signing.SignatureExpired:
        raise LinkRefused("expired") from None
    except signing.BadSignature:
        raise LinkRefused("invalid") from None
    link_id, _separator, secret = value.partition(".")
    if not _LINK_ID.fullmatch(link_id) or not secret:
        raise LinkRefused("invalid")
    return int(link_id), secret


def _usable_link(token: str, *, for_update: bool = False) -> SelfServiceLink:
    link_id, secret = _parse_token(token)
    links = SelfServiceLink.objects.select_related("customer")
    if for_update:
        links = links.select_for_update(of=("self",))
    link = links.filter(pk=link_id).first()
    if link is None or not hmac.compare_digest(link.token_digest, _digest(secret)):
        raise LinkRefused("invalid")
    if link.customer.deleted_at is not None:
        raise LinkRefused("invalid")
    if link.used_at is not None:
        raise LinkRefused("used")
    if link.revoked_at is not None:
        raise LinkRefused("revoked")
    if link.expires_at <= timezone.now():
        raise LinkRefused("expired")
    return link


def link_for_token(token: str) -> SelfServiceLink:
    """The link a correctly signed token names, used or not (for the thank-you page)."""
    link_id, secret = _parse_token(token)
    link = SelfServiceLink.objects.select_related("customer", "submission").filter(pk=link_id).first()
    if link is None or not hmac.compare_digest(link.token_digest, _digest(secret)):
        raise LinkRefused("invalid")
    return link


# --- timeline and context -----------------------------------------------------------------------
def _event(customer: Customer, *, actor: User | None, kind: str, data: dict[str, Any]) -> CustomerEvent:
    return CustomerEvent.objects.create(
        customer=customer,
        kind=kind,
        actor=actor,
        actor_label=actor.get_username()[:150] if actor is not None else "",
        channel=current_context().channel or "",
        data=data,
    )


@contextmanager
def _self_service_context(ip: str | None) -> Iterator[None]:
    """Everything a customer's submission writes is marked as coming from the self-service page."""
    context = current_context()
    token = set_context(RequestContext(request_id=context.request_id, ip=ip or context.ip, channel=CHANNEL))
    try:
        yield
    finally:
        reset_context(token)


# --- staff: links -------------------------------------------------------------------------------
def _ensure_visible(actor: User, customer: Customer) -> None:
    if not customers_visible_to(actor).filter(pk=customer.pk).exists():
        raise NotFound(_("Not found."))


@transaction.atomic
def link_create(*, actor: User, customer: Customer) -> tuple[SelfServiceLink, str]:
    """A new link for ``customer``; returns the link and its token, which is shown only now.

    Earlier unused links of the customer are revoked, so only the latest one sent works.
    """
    ensure_permitted(actor, "customers.change")
    _ensure_visible(actor, customer)
    now = timezone.now()
    revoked = SelfServiceLink.objects.filter(
        customer=customer, used_at__isnull=True, revoked_at__isnull=True
    ).update(revoked_at=now)
    secret = secrets.token_urlsafe(24)
    link = SelfServiceLink.objects.create(
        customer=customer,
        token_digest=_digest(secret),
        created_by=actor,
        created_at=now,
        expires_at=now + dt.timedelta(hours=settings.SELF_SERVICE_LINK_HOURS),
    )
    token = _signer().sign(f"{link.pk}.{secret}")
    _event(
        customer,
        actor=actor,
        kind=EventKind.SELF_SERVICE_LINK,
        data={"link_id": link.pk, "expires_at": link.expires_at.isoformat(), "revoked": revoked},
    )
    audit_record(
        actor=actor,
        action="customer.self_service_link",
        target=customer,
        after={"link_id": link.pk, "expires_at": link.expires_at.isoformat(), "revoked_links": revoked},
    )
    return link, token


def qr_svg(url: str) -> str:
    """The link as a QR code, inline SVG markup that scales with its container."""
    svg: str = segno.make(url, error="m").svg_inline(
        scale=4, border=2, omitsize=True, title=_("QR code of the link")
    )
    return svg


# --- the customer: open and submit ---------------------------------------------------------------
def _display_phone(e164: str) -> str:
    # Chinese numbers as people write them; foreign ones keep their country code.
    if e164.startswith("+86"):
        try:
            return normalise_phone(e164).national
        except ValidationFailed:
            return e164
    return e164


def contact_details(customer: Customer) -> dict[str, Any]:
    """The customer's own details as the self-service form shows them (plain, not masked)."""
    return {
        "name": customer.name,
        "phones": [
            {"number": _display_phone(phone.number), "e164": phone.number} for phone in customer.phones.all()
        ],
        "emails": [email.address for email in customer.emails.all()],
        "addresses": [
            {
                "province": address.province,
                "city": address.city,
                "district": address.district,
                "street": address.street,
                "postcode": address.postcode,
            }
            for address in customer.addresses.all()
        ],
        "birthday": customer.birthday,
        "lunar_birthday": {
            "month": customer.lunar_birthday_month,
            "day": customer.lunar_birthday_day,
            "is_leap_month": customer.lunar_birthday_is_leap_month,
        }
        if customer.lunar_birthday_month
        else None,
        "marketing_consent": customer.marketing_consent,
    }


def link_open(token: str) -> OpenedLink:
    """The usable link behind ``token`` and its customer's details; LinkRefused otherwise."""
    link = _usable_link(token)
    return OpenedLink(link=link, customer=link.customer, details=contact_details(link.customer))


def _with_existing_details(customer: Customer, data: Mapping[str, Any]) -> dict[str, Any]:
    """The customer's values with what they cannot see kept from the record.

    The form shows numbers, addresses and emails only; labels, phone types, extensions and
    which entry is primary stay as staff recorded them for entries the customer kept.
    """
    result = dict(data)
    if isinstance(data.get("phones"), list):
        existing = {phone.number: phone for phone in customer.phones.all()}
        phones: list[Any] = []
        for raw in data["phones"]:
            number = str(raw.get("number", "") if isinstance(raw, dict) else raw)
            try:
                parsed = normalise_phone(number)
            except ValidationFailed:
                phones.append({"number": number})  # refused, with its reason, by clean_customer
                continue
            row = existing.get(parsed.e164)
            if row is None:
                phones.append({"number": number})
            else:
                keeps_extension = row.extension and not parsed.extension
                phones.append(
                    {
                        "number": f"{number} ext. {row.extension}" if keeps_extension else number,
                        "kind": row.kind,
                        "label": row.label,
                        "is_primary": row.is_primary,
                    }
                )
        result["phones"] = phones
    if isinstance(data.get("emails"), list):
        existing_emails = {email.address.lower(): email for email in customer.emails.all()}
        emails: list[Any] = []
        for raw in data["emails"]:
            address = str(raw.get("address", "") if isinstance(raw, dict) else raw)
            row_email = existing_emails.get(address.strip().lower())
            emails.append(
                {"address": address}
                if row_email is None
                else {"address": address, "label": row_email.label, "is_primary": row_email.is_primary}
            )
        result["emails"] = emails
    if isinstance(data.get("addresses"), list):
        # Addresses have no key of their own: the form lists them in the record's order.
        existing_addresses = list(customer.addresses.all())
        addresses: list[Any] = []
        for position, raw in enumerate(data["addresses"]):
            item = dict(raw) if isinstance(raw, dict) else raw
            if isinstance(item, dict) and position < len(existing_addresses):
                item.setdefault("label", existing_addresses[position].label)
                item.setdefault("is_primary", existing_addresses[position].is_primary)
            addresses.append(item)
        result["addresses"] = addresses
    return result


def _payload_of(clean: CleanCustomer) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    if clean.phones is not None:
        payload["phones"] = [
            {
                "number": phone.e164 + (f" ext. {phone.extension}" if phone.extension else ""),
                "kind": phone.kind,
                "label": phone.label,
                "is_primary": phone.is_primary,
            }
            for phone in clean.phones
        ]
    if clean.emails is not None:
        payload["emails"] = [
            {"address": email.address, "label": email.label, "is_primary": email.is_primary}
            for email in clean.emails
        ]
    if clean.addresses is not None:
        payload["addresses"] = [
            {
                "province": address.province,
                "city": address.city,
                "district": address.district,
                "street": address.street,
                "postcode": address.postcode,
                "label": address.label,
                "is_primary": address.is_primary,
            }
            for address in clean.addresses
        ]
    if "birthday" in clean.values:
        birthday = clean.values["birthday"]
        payload["birthday"] = birthday.isoformat() if birthday else None
    if "lunar_birthday" in clean.values:
        lunar = clean.values["lunar_birthday"]
        payload["lunar_birthday"] = (
            {"month": lunar[0], "day": lunar[1], "is_leap_month": lunar[2]} if lunar else None
        )
    if "marketing_consent" in clean.values:
        payload["marketing_consent"] = clean.values["marketing_consent"]
    return payload


def _comparable(field: str, value: Any) -> Any:
    """What the customer can see and change of a field: labels and primary flags left out."""
    if field == "phones":
        return [item["number"] for item in value or []]
    if field == "emails":
        return [item["address"] for item in value or []]
    if field == "addresses":
        keys = ("province", "city", "district", "street", "postcode")
        return [tuple(item[key] for key in keys) for item in value or []]
    return value


def _current_payload(customer: Customer) -> dict[str, Any]:
    details = contact_details(customer)
    extensions = {phone.number: phone.extension for phone in customer.phones.all()}
    return {
        "phones": [
            {
                "number": phone["e164"]
                + (f" ext. {extensions[phone['e164']]}" if extensions[phone["e164"]] else "")
            }
            for phone in details["phones"]
        ],
        "emails": [{"address": address} for address in details["emails"]],
        "addresses": details["addresses"],
        "birthday": details["birthday"].isoformat() if details["birthday"] else None,
        "lunar_birthday": details["lunar_birthday"],
        "marketing_consent": details["marketing_consent"],
    }


def _proposal(customer: Customer, data: Mapping[str, Any], consent: bool) -> dict[str, Any]:
    """The validated changes the customer asks for: only fields whose visible value differs."""
    errors = Errors()
    for key in sorted(set(data) - set(SELF_SERVICE_DATA_FIELDS)):
        errors.add(key, _("There is no such field."), label=key)
    errors.raise_if_any()
    clean = clean_customer(
        {**_with_existing_details(customer, data), "marketing_consent": bool(consent)}, current=customer
    )
    proposed = _payload_of(clean)
    current = _current_payload(customer)
    return {
        field: value
        for field, value in proposed.items()
        if _comparable(field, value) != _comparable(field, current.get(field))
    }


def submit(token: str, data: Mapping[str, Any], consent: bool, ip: str | None) -> SelfServiceSubmission:
    """Take the customer's corrections through a link; the link is spent by the first valid submit.

    Invalid input is refused (ValidationFailed, per field) and leaves the link usable so the
    customer can correct it. The changes are applied at once when approval is "auto";
    otherwise they wait for staff. Nothing to change still spends the link and is recorded.
    """
    _parse_token(token)  # a forged or expired token never reaches the database
    with _self_service_context(ip), transaction.atomic():
        link = _usable_link(token, for_update=True)
        customer = link.customer
        proposal = _proposal(customer, data, consent)
        now = timezone.now()
        # Single use even under a race: only one conditional UPDATE can flip used_at.
        claimed = SelfServiceLink.objects.filter(
            pk=link.pk, used_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now
        ).update(used_at=now)
        if not claimed:
            raise LinkRefused("used")
        apply_now = not proposal or settings.SELF_SERVICE_APPROVAL == APPROVAL_AUTO
        submission = SelfServiceSubmission.objects.create(
            link=link,
            customer=customer,
            payload=json.dumps(proposal, ensure_ascii=False, sort_keys=True),
            marketing_consent=bool(consent),
            submitted_at=now,
            ip=ip,
            status=SubmissionStatus.APPLIED if apply_now else SubmissionStatus.PENDING,
            reviewed_at=now if apply_now else None,
        )
        fields = sorted(proposal)
        _event(
            customer,
            actor=None,
            kind=EventKind.SELF_SERVICE_SUBMITTED,
            data={"submission_id": submission.pk, "fields": fields, "status": submission.status},
        )
        if proposal and apply_now:
            customer_update(
                actor=None, customer=customer, data=proposal, expected_version=None, allow_duplicate=True
            )
        audit_record(
            actor=None,
            action="customer.self_service_submit",
            target=customer,
            after={"submission_id": submission.pk, "fields": fields, "status": submission.status},
        )
    return submission


# --- staff: review ------------------------------------------------------------------------------
def submissions_pending(user: User) -> QuerySet[SelfServiceSubmission]:
    """Submissions waiting for approval whose customer ``user`` can see (order them by keyset)."""
    return (
        SelfServiceSubmission.objects.filter(
            status=SubmissionStatus.PENDING, customer__in=customers_visible_to(user)
        )
        .select_related("customer")
        # submission_changes compares with the record's contacts: fetched once for the page.
        .prefetch_related("customer__phones", "customer__emails", "customer__addresses")
    )


def submission_get(user: User, submission_id: int) -> SelfServiceSubmission:
    """A submission of a customer ``user`` can see; NotFound otherwise (existence is not leaked)."""
    submission = (
        SelfServiceSubmission.objects.filter(pk=submission_id, customer__in=customers_visible_to(user))
        .select_related("customer")
        .first()
    )
    if submission is None:
        raise NotFound(_("Not found."))
    return submission


def _shown(field: str, value: Any, *, reveal: bool) -> list[str]:
    if value is None or value == []:
        return []
    if field == "phones":
        numbers = [str(item["number"]) for item in value]
        return numbers if reveal else [mask_phone(number.split(" ext. ")[0]) for number in numbers]
    if field == "emails":
        addresses = [str(item["address"]) for item in value]
        return addresses if reveal else [mask_email(address) for address in addresses]
    if field == "addresses":
        shown = []
        for item in value:
            street = item["street"] if reveal else mask_address(item["street"])
            parts = [item["province"], item["city"], item["district"], street, item["postcode"]]
            shown.append(" ".join(part for part in parts if part))
        return shown
    if field == "lunar_birthday":
        lunar = LunarDate(2000, value["month"], value["day"], value["is_leap_month"])
        return [f"{format_lunar(lunar)} ({lunar.month}/{lunar.day})"]
    if field == "marketing_consent":
        return [_("Yes") if value else _("No")]
    return [str(value)]


def submission_changes(user: User, submission: SelfServiceSubmission) -> list[ProposedChange]:
    """What approving would change, against the record as it is now; masked unless allowed."""
    reveal = can_view_sensitive(user)
    labels = field_labels()
    proposal: dict[str, Any] = json.loads(submission.payload or "{}")
    current = _current_payload(submission.customer)
    return [
        ProposedChange(
            field=field,
            label=labels.get(field, field),
            before=_shown(field, current.get(field), reveal=reveal),
            after=_shown(field, proposal[field], reveal=reveal),
        )
        for field in SELF_SERVICE_FIELDS
        if field in proposal
    ]


def _locked_pending(actor: User, submission: SelfServiceSubmission) -> SelfServiceSubmission:
    _ensure_visible(actor, submission.customer)
    locked = (
        SelfServiceSubmission.objects.select_for_update(of=("self",))
        .select_related("customer")
        .get(pk=submission.pk)
    )
    if locked.status != SubmissionStatus.PENDING:
        raise Conflict(_("These changes were already reviewed."))
    return locked


@transaction.atomic
def submission_approve(*, actor: User, submission: SelfServiceSubmission) -> SelfServiceSubmission:
    """Apply a customer's pending changes as ``actor``: history and timeline name the approver."""
    ensure_permitted(actor, "customers.change")
    locked = _locked_pending(actor, submission)
    proposal: dict[str, Any] = json.loads(locked.payload or "{}")
    if proposal:
        customer_update(
            actor=actor, customer=locked.customer, data=proposal, expected_version=None, allow_duplicate=True
        )
    locked.status = SubmissionStatus.APPLIED
    locked.reviewed_by = actor
    locked.reviewed_at = timezone.now()
    locked.save(update_fields=["status", "reviewed_by", "reviewed_at"])
    _event(
        locked.customer,
        actor=actor,
        kind=EventKind.SELF_SERVICE_REVIEWED,
        data={"submission_id": locked.pk, "status": locked.status, "fields": sorted(proposal)},
    )
    audit_record(
        actor=actor,
        action="customer.self_service_approve",
        target=locked.customer,
        after={"submission_id": locked.pk, "fields": sorted(proposal)},
    )
    return locked


@transaction.atomic
def submission_reject(
    *, actor: User, submission: SelfServiceSubmission, reason: str = ""
) -> SelfServiceSubmission:
    """Decline a customer's pending changes; the record stays exactly as it was."""
    ensure_permitted(actor, "customers.change")
    locked = _locked_pending(actor, submission)
    reason = " ".join(str(reason or "").split())
    if len(reason) > REJECT_REASON_MAX_LENGTH:
        raise ValidationFailed.for_field(
            "reason",
            _("At most %(count)d characters.") % {"count": REJECT_REASON_MAX_LENGTH},
            label=_("Reason"),
        )
    locked.status = SubmissionStatus.REJECTED
    locked.reviewed_by = actor
    locked.reviewed_at = timezone.now()
    locked.save(update_fields=["status", "reviewed_by", "reviewed_at"])
    _event(
        locked.customer,
        actor=actor,
        kind=EventKind.SELF_SERVICE_REVIEWED,
        data={"submission_id": locked.pk, "status": locked.status, "reason": reason},
    )
    audit_record(
        actor=actor,
        action="customer.self_service_reject",
        target=locked.customer,
        after={"submission_id": locked.pk, "reason": reason},
    )
    return locked
