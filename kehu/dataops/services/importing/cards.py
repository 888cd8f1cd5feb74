"""Import of membership cards with their opening balances (points, stored value, visits).

Each row becomes one active card of an existing customer, with its number (typed, or generated
from the card-number sequence as ``card_issue`` generates it), card type and tier (by code or
name), issue and expiry dates, and its balances in the other system on the day of the import.
The balances are booked exactly as the ledger books them (kehu.loyalty.services.ledger): one
``LedgerOperation`` per card (key ``import:<job>:card:<number>``), one ``issue`` entry per
non-zero balance with the running balance after it, a points lot for the points, and the cached
balances on the card row; so ``kehu ledger reconcile`` stays clean. The entries are dated at the
import (that is when the books received them) and say so in their note; the card keeps the
issue date of the file. Opening points expire ``POINTS_VALIDITY_DAYS`` after the import unless
the file gives their expiry date.

Rows are written (``card_writes``) in bulk through the cursor (``executemany`` on SQLite, ``COPY`` on PostgreSQL)
with the primary keys reserved first, as kehu.loyalty.demo writes its card books; one timeline
event ("card issued", channel ``import``) per card. No card payment is recorded: the money for
these cards changed hands in the other system.

Undo removes the cards and everything the import wrote for them, as if the import had not
happened; it is refused while any card has moved since: a newer ledger entry, a status or tier
change (the card's version), an order, a card payment or a replacement.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from kehu.core.errors import DomainError
from kehu.dataops.models import ImportKind
from kehu.dataops.services.importing import rowcells
from kehu.dataops.services.importing.base import (
    BatchOutcome,
    CellError,
    ImportContext,
    TargetField,
    imported_object_ids,
    register_handler,
)
from kehu.dataops.services.importing.card_writes import (
    LOOKUP_CHUNK,
    MODEL,
    delete_cards,
    existing_numbers,
    operation_prefix,
    refuse_touched,
    write_cards,
)
from kehu.dataops.services.importing.refs import (
    CustomerRef,
    ref_from_values,
    reference_fields,
    resolve_refs,
)
from kehu.loyalty.models import (
    Card,
    CardType,
    Tier,
)
from kehu.loyalty.services.cards.numbers import normalise_card_number


# --- validation (pure) ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CardTypeInfo:
    id: int
    code: str
    validity_days: int | None
    initial_tier_id: int | None


@dataclass(frozen=True)
class CardsState:
    """What ``validate`` needs, read before the workers fork. ``None`` marks an ambiguous name."""

    card_types: dict[str, CardTypeInfo | None]
    tiers: dict[str, int | None]
    default_card_type: CardTypeInfo | None
    default_tier_id: int | None
    zone: str


@dataclass(frozen=True, slots=True)
class CardRow:
    ref: CustomerRef
    number: str  # "" = generate
    card_type_id: int
    card_type_code: str
    tier_id: int | None
    issued_at: dt.datetime
    expires_on: dt.date | None
    points: int
    stored_value_fen: int
    visits: int
    points_expires_at: dt.datetime | None


def _by_code_and_name(rows: Sequence[tuple[str, str, Any]]) -> dict[str, Any]:
    """Lookup by code or name; a name two rows share maps to None (ambiguous) unless it is a code."""
    found: dict[str, Any] = {}
    codes = {rowcells.lookup_key(code) for code, _name, _value in rows}
    for code, _name, value in rows:
        found[rowcells.lookup_key(code)] = value
    for _code, name, value in rows:
        key = rowcells.lookup_key(name)
        if key in codes:
            continue
        found[key] = None if key in found and found[key] != value else value
    return found


class CardsHandler:
    kind = ImportKind.CARDS.value

    def target_fields(self) -> list[TargetField]:
        return [
            TargetField(
                "card_number",
                gettext_lazy("Card number"),
                ("会员卡号", "卡号", "会员卡", "卡编号", "card number", "card no", "card"),
                help_text=gettext_lazy("Empty: a number is generated."),
            ),
            *reference_fields(),
            TargetField(
                "card_type",
                gettext_lazy("Card type"),
                ("卡类型", "卡种", "卡类别", "卡名称", "会员卡类型", "card type", "type"),
                help_text=gettext_lazy("The card type's code or name."),
            ),
            TargetField(
                "tier",
                gettext_lazy("Tier"),
                ("会员等级", "等级", "级别", "会员级别", "tier", "level"),
                help_text=gettext_lazy("The tier's code or name; empty: the card type's starting tier."),
            ),
            TargetField(
                "issued_on",
                gettext_lazy("Issued on"),
                (
                    "开卡日期",
                    "办卡日期",
                    "开卡时间",
                    "办卡时间",
                    "发卡日期",
                    "issued",
                    "issue date",
                    "issued on",
                ),
            ),
            TargetField(
                "expires_on",
                gettext_lazy("Valid until"),
                (
                    "到期日期",
                    "有效期至",
                    "有效期",
                    "截止日期",
                    "失效日期",
                    "到期时间",
                    "expiry",
                    "expires",
                    "valid until",
                ),
            ),
            TargetField(
                "points",
                gettext_lazy("Points"),
                ("积分", "剩余积分", "积分余额", "可用积分", "当前积分", "points", "points balance"),
            ),
            TargetField(
                "stored_value",
                gettext_lazy("Stored value"),
                ("余额", "储值余额", "卡内余额", "储值", "账户余额", "balance", "stored value"),
                help_text=gettext_lazy("In yuan: 1234.50"),
            ),
            TargetField(
                "visits",
                gettext_lazy("Visits left"),
                ("剩余次数", "次数", "可用次数", "visits", "visits left"),
            ),
            TargetField(
                "points_expire_on",
                gettext_lazy("Points expire on"),
                ("积分到期日", "积分有效期", "积分过期日期", "points expiry", "points expire on"),
            ),
        ]

    def prepare_context(self, context: ImportContext) -> CardsState:
        types = [
            (card_type.code, card_type.name, CardTypeInfo(
                card_type.pk, card_type.code, card_type.validity_days, card_type.initial_tier_id))
            for card_type in CardType.objects.order_by("pk")
        ]  # fmt: skip
        tiers = list(Tier.objects.order_by("rank").values_list("code", "name", "pk"))
        lookup = _by_code_and_name(types)
        default_name = str(context.options.get("card_type") or "")
        starting = Tier.objects.filter(is_active=True).order_by("rank").values_list("pk", flat=True).first()
        return CardsState(
            card_types=lookup,
            tiers=_by_code_and_name(tiers),
            default_card_type=lookup.get(rowcells.lookup_key(default_name)) if default_name else None,
            default_tier_id=starting,
            zone=str(settings.TIME_ZONE),
        )

    def validate(self, values: dict[str, str], state: CardsState) -> tuple[CardRow | None, list[CellError]]:
        ref, errors = ref_from_values(values)
        number = ""
        raw_number = values.get("card_number", "").strip()
        if raw_number:
            try:
                number = normalise_card_number(raw_number)
            except DomainError as exc:
                errors.append(CellError("card_number", _field_reason(exc)))
        card_type = state.default_card_type
        type_text = values.get("card_type", "").strip()
        if type_text:
            key = rowcells.lookup_key(type_text)
            if key in state.card_types and state.card_types[key] is None:
                card_type = None
                errors.append(CellError("card_type", _("Several card types have this name; use the code.")))
            else:
                card_type = state.card_types.get(key)
                if card_type is None:
                    errors.append(CellError("card_type", _("No card type has this code or name.")))
        elif card_type is None:
            errors.append(CellError("card_type", _("Give the card type (its code or name).")))
        tier_id = (
            card_type.initial_tier_id if card_type and card_type.initial_tier_id else state.default_tier_id
        )
        tier_text = values.get("tier", "").strip()
        if tier_text:
            key = rowcells.lookup_key(tier_text)
            if key in state.tiers and state.tiers[key] is None:
                errors.append(CellError("tier", _("Several tiers have this name; use the code.")))
            elif key not in state.tiers:
                errors.append(CellError("tier", _("No tier has this code or name.")))
            else:
                tier_id = state.tiers[key]
        now = timezone.now()
        issued_at = now
        issued_text = values.get("issued_on", "")
        if issued_text.strip():
            try:
                issued_at = rowcells.parse_local_datetime(issued_text, zone=state.zone)
            except ValueError as exc:
                errors.append(CellError("issued_on", str(exc)))
            else:
                if issued_at > now:
                    errors.append(CellError("issued_on", _("The date is in the future.")))
        expires_on: dt.date | None = None
        expires_text = values.get("expires_on", "")
        if expires_text.strip():
            try:
                expires_on = rowcells.parse_date(expires_text)
            except ValueError as exc:
                errors.append(CellError("expires_on", str(exc)))
            else:
                if expires_on < issued_at.astimezone(_zone(state.zone)).date():
                    errors.append(CellError("expires_on", _("The card cannot expire before it was issued.")))
        elif card_type is not None and card_type.validity_days:
            expires_on = issued_at.astimezone(_zone(state.zone)).date() + dt.timedelta(
                days=card_type.validity_days
            )
        balances: dict[str, int] = {}
        for key, reader in (
            ("points", rowcells.parse_count),
            ("stored_value", rowcells.parse_amount_fen),
            ("visits", rowcells.parse_count),
        ):
            text = values.get(key, "")
            if not text.strip():
                balances[key] = 0
                continue
            try:
                balances[key] = reader(text)
            except ValueError as exc:
                errors.append(CellError(key, str(exc)))
        points_expires_at: dt.datetime | None = None
        points_expiry_text = values.get("points_expire_on", "")
        if points_expiry_text.strip():
            try:
                day = rowcells.parse_date(points_expiry_text)
            except ValueError as exc:
                errors.append(CellError("points_expire_on", str(exc)))
            else:
                # Points are good through the day the file names.
                points_expires_at = rowcells.start_of_day(day + dt.timedelta(days=1), zone=state.zone)
                if points_expires_at <= now and balances.get("points"):
                    errors.append(CellError("points_expire_on", _("These points have already expired.")))
        if errors or ref is None or card_type is None:
            return None, errors
        return (
            CardRow(
                ref=ref,
                number=number,
                card_type_id=card_type.id,
                card_type_code=card_type.code,
                tier_id=tier_id,
                issued_at=issued_at,
                expires_on=expires_on,
                points=balances["points"],
                stored_value_fen=balances["stored_value"],
                visits=balances["visits"],
                points_expires_at=points_expires_at,
            ),
            [],
        )

    # --- write ------------------------------------------------------------------------------------
    def write(self, rows: list[tuple[int, Any]], context: ImportContext) -> BatchOutcome:
        outcome = BatchOutcome()
        resolution = resolve_refs(
            (row.ref for _number, row in rows), actor=context.actor, cache=context.cache
        )
        typed = sorted({row.number for _number, row in rows if row.number})
        taken = existing_numbers(typed)
        seen: set[str] = context.cache.setdefault("card_numbers", set())
        accepted: list[tuple[int, CardRow, int]] = []
        for row_number, row in rows:
            error = resolution.error_for(row.ref)
            if error is not None:
                outcome.add_error(row_number, error.column_key, error.reason)
                continue
            if row.number and (row.number in taken or row.number in seen):
                reason = (
                    _("Card number %(number)s is already in use.")
                    if row.number in taken
                    else _("Card number %(number)s appears twice in the file.")
                )
                outcome.add_error(row_number, "card_number", reason % {"number": row.number})
                continue
            if row.number:
                seen.add(row.number)
            accepted.append((row_number, row, resolution.found[row.ref]))
        outcome.created = len(accepted)
        if accepted and not context.dry_run:
            write_cards(accepted, context)
        return outcome

    def undo(self, context: ImportContext) -> int:
        card_ids = [object_id for object_id, _version, _action in imported_object_ids(context.job.pk, MODEL)]
        removed = 0
        prefix = operation_prefix(context.job.pk)
        for start in range(0, len(card_ids), LOOKUP_CHUNK):
            chunk = card_ids[start : start + LOOKUP_CHUNK]
            cards = list(
                Card.objects.select_for_update()
                .filter(pk__in=chunk)
                .order_by("pk")
                .values_list("pk", "number", "version", "replaced_by_id", "customer_id")
            )
            refuse_touched(cards, prefix)
            removed += delete_cards(cards, prefix)
        return removed


def _field_reason(exc: DomainError) -> str:
    reasons = [reason for field_reasons in exc.fields.values() for reason in field_reasons]
    return reasons[0] if reasons else exc.message


def _zone(name: str) -> Any:
    import zoneinfo

    return zoneinfo.ZoneInfo(name)


CARDS_HANDLER: Final = register_handler(CardsHandler())
