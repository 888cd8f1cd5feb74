"""Likely duplicates of a customer being typed in: the create form and the API warn as you type.

The input is what the user has typed so far, so nothing is refused: a phone, email or ID
number that does not parse yet is simply not used. Candidates come from the same keys as the
scan (blind indexes; the exact name; the pinyin with the birthday) and are scored by the same
rules; only customers the user may see are considered.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from django.db.models import Q

from kehu.accounts.models import User
from kehu.core.crypto import blind_index
from kehu.core.emails import EmailRefused, checked_email
from kehu.core.errors import ValidationFailed
from kehu.core.idcard import parse_id_number
from kehu.core.permissions import ensure_permitted
from kehu.core.phones import normalise_phone
from kehu.core.pinyin import name_pinyin
from kehu.customers.models import (
    EMAIL_INDEX_PURPOSE,
    ID_NUMBER_INDEX_PURPOSE,
    PHONE_INDEX_PURPOSE,
    CustomerEmail,
    CustomerPhone,
)
from kehu.customers.selectors import customers_visible_to
from kehu.dataops.services.dedup.profiles import load_profiles
from kehu.dataops.services.dedup.scoring import Profile, score_pair
from kehu.dataops.services.dedup.text import normalise_name

# A warning costs a glance, a missed duplicate a merge later: warn below the scan's threshold.
SUGGEST_THRESHOLD: Final = 0.5
MAX_SUGGESTIONS: Final = 5
# Candidates looked at per key: a common name has thousands of namesakes.
MAX_PER_KEY: Final = 200


@dataclass(frozen=True)
class Suggestion:
    code: str
    name: str
    score: float
    reasons: list[dict[str, Any]] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)


def _phone_indexes(phones: Iterable[str]) -> set[str]:
    indexes = set()
    for raw in phones:
        if not raw or not raw.strip():
            continue
        try:
            number = normalise_phone(raw)
        except ValidationFailed:
            continue
        indexes.add(blind_index(number.e164, purpose=PHONE_INDEX_PURPOSE))
    return indexes


def _email_indexes(emails: Iterable[str]) -> set[str]:
    indexes = set()
    for raw in emails:
        if not raw or not raw.strip():
            continue
        checked = checked_email(raw.strip())
        if not isinstance(checked, EmailRefused):
            indexes.add(blind_index(checked, purpose=EMAIL_INDEX_PURPOSE))
    return indexes


def _id_index(id_number: str | None) -> tuple[str, dt.date | None, str]:
    if not id_number or not id_number.strip():
        return "", None, ""
    try:
        parsed = parse_id_number(id_number)
    except (ValidationFailed, ValueError):
        return "", None, ""
    return blind_index(parsed.number, purpose=ID_NUMBER_INDEX_PURPOSE), parsed.birthday, parsed.gender


def likely_duplicates(
    user: User | None,
    *,
    name: str = "",
    phones: Sequence[str] = (),
    emails: Sequence[str] = (),
    id_number: str | None = None,
    birthday: dt.date | None = None,
    city: str = "",
    gender: str = "",
    exclude_code: str = "",
) -> list[Suggestion]:
    """Visible customers that may be the person typed in, most likely first (at most five)."""
    ensure_permitted(user, "customers.view")
    phone_indexes = _phone_indexes(phones)
    email_indexes = _email_indexes(emails)
    id_index, id_birthday, id_gender = _id_index(id_number)
    birthday = birthday or id_birthday
    gender = gender or id_gender
    clean_name = name.strip()
    reading = name_pinyin(clean_name).full if clean_name else ""
    visible = customers_visible_to(user) if user is not None else None
    if visible is None:
        from kehu.customers.models import Customer

        visible = Customer.objects.all()
    if exclude_code:
        visible = visible.exclude(code=exclude_code.strip().upper())

    keys = Q(pk__in=[])
    if phone_indexes:
        keys |= Q(
            pk__in=CustomerPhone.objects.filter(number_index__in=phone_indexes).values("customer_id")[
                :MAX_PER_KEY
            ]
        )
    if email_indexes:
        keys |= Q(
            pk__in=CustomerEmail.objects.filter(address_index__in=email_indexes).values("customer_id")[
                :MAX_PER_KEY
            ]
        )
    if id_index:
        keys |= Q(id_number_index=id_index)
    ids = set(visible.filter(keys).values_list("id", flat=True)[:MAX_PER_KEY]) if keys.children else set()
    if clean_name:
        ids |= set(visible.filter(name=clean_name).order_by("-id").values_list("id", flat=True)[:MAX_PER_KEY])
        if birthday is not None and reading:
            ids |= set(
                visible.filter(
                    birthday_month_day=birthday.month * 100 + birthday.day,
                    birthday=birthday,
                    name_pinyin=reading,
                ).values_list("id", flat=True)[:MAX_PER_KEY]
            )
    if not ids:
        return []
    typed = Profile(
        id=0,
        name=normalise_name(clean_name),
        pinyin=reading,
        gender=gender,
        birthday=birthday,
        id_number_index=id_index,
        phones=frozenset(phone_indexes),
        emails=frozenset(email_indexes),
        places=frozenset(),
        streets=frozenset(),
    )
    profiles = load_profiles(ids)
    codes = dict(visible.filter(pk__in=ids).values_list("id", "code"))
    names = dict(visible.filter(pk__in=ids).values_list("id", "name"))
    suggestions = []
    for customer_id, profile in profiles.items():
        if customer_id not in codes:
            continue
        profile_typed = _with_city(typed, city, profile) if city else typed
        result = score_pair(profile_typed, profile)
        if result.score >= SUGGEST_THRESHOLD:
            suggestions.append(
                Suggestion(
                    code=codes[customer_id],
                    name=names[customer_id],
                    score=result.score,
                    reasons=[reason.as_dict() for reason in result.reasons],
                    conflicts=list(result.conflicts),
                )
            )
    suggestions.sort(key=lambda suggestion: (-suggestion.score, suggestion.code))
    return suggestions[:MAX_SUGGESTIONS]


def _with_city(typed: Profile, city: str, other: Profile) -> Profile:
    """The typed profile placed in ``city``; the province is taken from the other record when it
    has the same city, because a form often has the city filled before the province."""
    city = city.strip()
    provinces = {province for province, other_city, _district in other.places if other_city == city} or {""}
    places = frozenset((province, city, "") for province in provinces)
    return Profile(
        id=typed.id,
        name=typed.name,
        pinyin=typed.pinyin,
        gender=typed.gender,
        birthday=typed.birthday,
        id_number_index=typed.id_number_index,
        phones=typed.phones,
        emails=typed.emails,
        places=places,
        streets=typed.streets,
    )
