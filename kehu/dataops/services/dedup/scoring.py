"""How likely two customer records are one person: evidence for and against, as a score in [0, 1].

Each piece of evidence adds a weight in log-odds (a Fellegi–Sunter style sum); the score is the
logistic of the sum less a prior, so that no single weak signal crosses the threshold alone:

- strong identifiers: the same ID number, phone or email (blind indexes compared, never the
  plain values), the same street address in the same city (worth little on top of a shared
  phone: a family shares both);
- the name: identical after normalisation (traditional → simplified, case, spaces), the same
  pinyin (homophones typed through an input method, names written in pinyin, traditional
  characters the table does not know), the same characters in another order, or a rapidfuzz
  similarity of the characters and of the pinyin; a clearly different name counts against;
- the birthday and the city;
- conflicts, which count against and block auto-merge: two different ID numbers, two different
  birthdays, two different genders.

Namesakes (same name, same city, nothing else shared) stay below the default threshold; the
same name with the same birthday, phone, email, ID number or street crosses it.

Reasons are stored as codes with parameters and translated when shown (:func:`reason_text`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from django.utils.translation import gettext as _
from rapidfuzz.distance import Levenshtein

# Log-odds weights, chosen with the labelled benchmark (bench/dedup_dataset.py).
PRIOR: Final = 2.2
W_SAME_ID_NUMBER: Final = 4.5
W_DIFFERENT_ID_NUMBER: Final = -5.0
W_SAME_PHONE: Final = 3.0
W_SAME_EMAIL: Final = 2.5
W_SAME_ADDRESS: Final = 2.0
# A household shares its phone and its address: the second of the two adds little.
W_SAME_ADDRESS_WITH_PHONE: Final = 0.5
W_SAME_DISTRICT: Final = 0.3
W_SAME_CITY: Final = 0.2
W_DIFFERENT_CITY: Final = -0.3
W_SAME_BIRTHDAY: Final = 2.0
W_DIFFERENT_BIRTHDAY: Final = -2.5
W_DIFFERENT_GENDER: Final = -2.0
W_SAME_NAME: Final = 1.6
W_SAME_PINYIN: Final = 1.3
W_REORDERED_NAME: Final = 1.0
# A fuzzy name similarity s contributes NAME_SLOPE * (s - NAME_PIVOT), clamped.
NAME_PIVOT: Final = 0.72
NAME_SLOPE: Final = 7.0
W_NAME_MAX_FUZZY: Final = 0.9
W_NAME_MIN: Final = -4.0


@dataclass(frozen=True, slots=True)
class Profile:
    """What the comparison needs of one customer; sensitive values only as blind indexes.

    ``name`` is the normalised name (kehu.dataops.services.dedup.text.normalise_name);
    ``places`` are (province, city, district) triples; ``streets`` are "city|normalised street".
    """

    id: int
    name: str
    pinyin: str = ""
    gender: str = ""
    birthday: dt.date | None = None
    id_number_index: str = ""
    phones: frozenset[str] = frozenset()
    emails: frozenset[str] = frozenset()
    places: frozenset[tuple[str, str, str]] = frozenset()
    streets: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    weight: float
    params: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "weight": round(self.weight, 2), "params": dict(self.params)}


@dataclass(frozen=True, slots=True)
class PairScore:
    score: float
    reasons: tuple[Reason, ...]
    conflicts: tuple[str, ...]


def _logistic(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))


def name_evidence(a: Profile, b: Profile) -> Reason | None:
    """The name's contribution: exact, same pinyin, reordered, or a fuzzy similarity."""
    if not a.name or not b.name:
        return None
    if a.name == b.name:
        return Reason("same_name", W_SAME_NAME)
    if a.pinyin and a.pinyin == b.pinyin:
        return Reason("same_pinyin", W_SAME_PINYIN)
    if len(a.name) > 1 and sorted(a.name) == sorted(b.name):
        return Reason("reordered_name", W_REORDERED_NAME)
    similarity = Levenshtein.normalized_similarity(a.name, b.name)
    if a.pinyin and b.pinyin:
        # Pinyin forgives a wrong character of the same or a close sound.
        similarity = max(similarity, 0.95 * Levenshtein.normalized_similarity(a.pinyin, b.pinyin))
    weight = max(W_NAME_MIN, min(W_NAME_MAX_FUZZY, NAME_SLOPE * (similarity - NAME_PIVOT)))
    code = "similar_name" if weight > 0 else "different_name"
    return Reason(code, weight, {"similarity": round(similarity * 100)})


def _place_evidence(a: Profile, b: Profile, *, same_phone: bool) -> Reason | None:
    if a.streets & b.streets:
        return Reason("same_address", W_SAME_ADDRESS_WITH_PHONE if same_phone else W_SAME_ADDRESS)
    if not a.places or not b.places:
        return None
    if a.places & b.places:
        return Reason("same_district", W_SAME_DISTRICT)
    cities_a = {(province, city) for province, city, _district in a.places if city}
    cities_b = {(province, city) for province, city, _district in b.places if city}
    if cities_a & cities_b:
        return Reason("same_city", W_SAME_CITY)
    if cities_a and cities_b:
        return Reason("different_city", W_DIFFERENT_CITY)
    return None


def score_pair(a: Profile, b: Profile) -> PairScore:
    """Score two profiles; the reasons are listed strongest first, conflicts by field name."""
    reasons: list[Reason] = []
    conflicts: list[str] = []
    if a.id_number_index and b.id_number_index:
        if a.id_number_index == b.id_number_index:
            reasons.append(Reason("same_id_number", W_SAME_ID_NUMBER))
        else:
            reasons.append(Reason("different_id_number", W_DIFFERENT_ID_NUMBER))
            conflicts.append("id_number")
    if shared := len(a.phones & b.phones):
        reasons.append(Reason("same_phone", W_SAME_PHONE, {"count": shared}))
    if shared := len(a.emails & b.emails):
        reasons.append(Reason("same_email", W_SAME_EMAIL, {"count": shared}))
    if (evidence := name_evidence(a, b)) is not None:
        reasons.append(evidence)
    if a.birthday is not None and b.birthday is not None:
        if a.birthday == b.birthday:
            reasons.append(Reason("same_birthday", W_SAME_BIRTHDAY))
        else:
            reasons.append(Reason("different_birthday", W_DIFFERENT_BIRTHDAY))
            conflicts.append("birthday")
    if a.gender and b.gender and a.gender != b.gender:
        reasons.append(Reason("different_gender", W_DIFFERENT_GENDER))
        conflicts.append("gender")
    if (evidence := _place_evidence(a, b, same_phone=bool(a.phones & b.phones))) is not None:
        reasons.append(evidence)
    total = sum(reason.weight for reason in reasons)
    reasons.sort(key=lambda reason: -abs(reason.weight))
    return PairScore(
        score=round(_logistic(total - PRIOR), 4), reasons=tuple(reasons), conflicts=tuple(conflicts)
    )


def reason_text(code: str, params: Mapping[str, Any] | None = None) -> str:
    """The reason in the current language, for pages, the API and the CLI."""
    params = dict(params or {})
    texts = {
        "same_id_number": _("Same ID number"),
        "different_id_number": _("Different ID numbers"),
        "same_phone": _("Same phone number"),
        "same_email": _("Same email address"),
        "same_name": _("Same name"),
        "same_pinyin": _("Names sound the same (same pinyin)"),
        "reordered_name": _("Same name characters in another order"),
        "similar_name": _("Similar names (similarity %(similarity)s/100)"),
        "different_name": _("Different names (similarity %(similarity)s/100)"),
        "same_birthday": _("Same birthday"),
        "different_birthday": _("Different birthdays"),
        "different_gender": _("Different genders"),
        "same_address": _("Same street address"),
        "same_district": _("Same district"),
        "same_city": _("Same city"),
        "different_city": _("Different cities"),
    }
    text = texts.get(code)
    if text is None:
        return code
    try:
        return text % params if "%(" in text else text
    except (KeyError, TypeError, ValueError):
        return text.split("(")[0].strip()


def conflict_label(field_name: str) -> str:
    labels = {"id_number": _("ID number"), "birthday": _("Birthday"), "gender": _("Gender")}
    return labels.get(field_name, field_name)
