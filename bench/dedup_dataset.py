"""A labelled duplicate-detection dataset: people, their duplicate records, and look-alikes who are not.

Each true person is a realistic demo customer (kehu.customers.demo). Some people are entered
again, one or two more times, the way duplicates arise at a front desk or from an import:

- the name with a typo (one character replaced), a homophone typed through a pinyin input
  method (伟 → 玮), the given name's characters swapped, written in pinyin ("Zhang Wei"), or in
  traditional characters (張偉);
- fields missing (birthday, ID number, email, address), a new phone number instead of the old;
- the phone in another format ("138-0013-8000", "+86 138 0013 8000", "0086 13800138000"),
  normalised by the same code as every write (kehu.core.phones);
- the email's domain in capitals.

And people who are different but look alike: true namesakes (same name, often the same city,
other phone and birthday) and family members who share a phone and the address.

``measure()`` writes the records through the bulk path, runs the real scan, and compares the
pairs it found with the labels: precision, recall and F1 at the default threshold, and at a
range of thresholds for choosing the default.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from typing import Any, Final

from kehu.core.phones import normalise_phone
from kehu.core.pinyin import name_pinyin
from kehu.customers.bulk import CustomerBulkWriter, CustomerRow, EmailRow, PhoneRow
from kehu.customers.demo import DemoCustomerGenerator
from kehu.dataops.services.dedup.text import TRADITIONAL_TO_SIMPLIFIED

# Characters read alike, as a pinyin input method offers them side by side.
HOMOPHONES: Final = (
    "伟纬玮炜韦", "明鸣铭", "丽莉俐", "静靖婧", "军君钧", "华桦骅", "红宏鸿虹", "杰洁", "燕艳雁",
    "敏闽", "强蔷", "磊垒", "涛韬", "斌彬", "勇永泳", "平萍苹", "辉晖", "鹏朋", "飞菲", "宇雨语羽",
    "浩皓昊", "凯恺", "健建剑", "俊峻骏", "帆凡", "林琳霖", "阳洋扬", "峰锋枫", "成诚", "志智",
    "东冬", "晨辰", "文雯", "玲铃", "慧惠", "琴芹", "云芸", "兰岚", "璐露", "欣馨", "佳嘉",
)  # fmt: skip
_HOMOPHONE_OF: Final = {character: group for group in HOMOPHONES for character in group}
_TRADITIONAL_OF: Final = {
    simplified: traditional for traditional, simplified in TRADITIONAL_TO_SIMPLIFIED.items()
}
TYPO_CHARACTERS: Final = "伟强磊军洋勇杰涛斌超明刚平辉鹏华飞鑫宇浩凯芳娜敏静丽艳娟霞秀燕玲丹萍红梅琳雪婷颖"
PHONE_FORMATS: Final = (
    "{n}",
    "{a}-{b}-{c}",
    "{a} {b} {c}",
    "+86 {a} {b} {c}",
    "0086 {n}",
    "+86-{n}",
    "86{n}",
)


@dataclass(frozen=True)
class LabelledRecord:
    person: int
    row: CustomerRow
    # What was done to this record, for reading the mistakes ("typo", "namesake", ...).
    variant: str


def _phone_text(e164: str, rng: random.Random) -> str:
    national = e164.removeprefix("+86")
    if len(national) != 11:
        return e164
    template = rng.choice(PHONE_FORMATS)
    return template.format(n=national, a=national[:3], b=national[3:7], c=national[7:])


def _phone_row(raw: str, label: str = "") -> PhoneRow:
    number = normalise_phone(raw)
    return PhoneRow(number=number.e164, last4=number.last4, kind=number.kind, label=label)


def _name_variant(name: str, rng: random.Random) -> tuple[str, str]:
    reading = name_pinyin(name)
    surname_length = 2 if reading.surname_syllables == 2 else 1
    given = name[surname_length:]
    choice = rng.random()
    if choice < 0.35 or not given:
        return name, "same_name"
    if choice < 0.47:
        position = rng.randrange(surname_length, len(name))
        replacement = rng.choice(TYPO_CHARACTERS.replace(name[position], ""))
        return name[:position] + replacement + name[position + 1 :], "typo"
    if choice < 0.62:
        positions = [index for index in range(surname_length, len(name)) if name[index] in _HOMOPHONE_OF]
        if positions:
            position = rng.choice(positions)
            group = _HOMOPHONE_OF[name[position]].replace(name[position], "")
            return name[:position] + rng.choice(group) + name[position + 1 :], "homophone"
        return name, "same_name"
    if choice < 0.72:
        if len(given) == 2:
            return name[:surname_length] + given[::-1], "swapped"
        return name, "same_name"
    if choice < 0.84:
        syllables = reading.syllables
        surname = "".join(syllables[: reading.surname_syllables or 1]).capitalize()
        given_pinyin = "".join(syllables[reading.surname_syllables or 1 :]).capitalize()
        return f"{surname} {given_pinyin}".strip(), "pinyin"
    traditional = "".join(_TRADITIONAL_OF.get(character, character) for character in name)
    return traditional, "traditional" if traditional != name else "same_name"


def _duplicate(base: CustomerRow, rng: random.Random) -> tuple[CustomerRow, str]:
    name, variant = _name_variant(base.name, rng)
    keep_birthday = rng.random() > 0.35
    keep_id = rng.random() > 0.5
    keep_email = rng.random() > 0.4
    keep_address = rng.random() > 0.4
    phone_choice = rng.random()
    phones: tuple[PhoneRow, ...] = ()
    if base.phones and phone_choice < 0.65:
        phones = (_phone_row(_phone_text(base.phones[0].number, rng)),)
    elif phone_choice < 0.85:
        phones = (_phone_row(f"139{rng.randrange(10**8):08d}"),)
        variant += "+new_phone"
    shares = (
        (keep_birthday and base.birthday is not None)
        or (keep_id and base.id_number is not None)
        or (keep_email and bool(base.emails))
        or (keep_address and bool(base.addresses))
        or (bool(phones) and bool(base.phones) and phones[0].number == base.phones[0].number)
    )
    if not shares and base.phones:
        # A record sharing nothing with the first could not be linked by anyone.
        phones = (_phone_row(_phone_text(base.phones[0].number, rng)),)
    emails = base.emails if keep_email else ()
    if emails and rng.random() < 0.3:
        local, _at, domain = emails[0].address.partition("@")
        emails = (EmailRow(address=f"{local}@{domain}"),)
    gender = base.gender if rng.random() > 0.1 or base.id_number else ""
    row = base._replace(
        name=name,
        gender=gender if not (keep_id and base.id_number) else base.gender,
        birthday=base.birthday if keep_birthday or (keep_id and base.id_number) else None,
        id_number=base.id_number if keep_id else None,
        phones=phones,
        emails=emails,
        addresses=base.addresses if keep_address else (),
        tags=(),
        created_at=None,
    )
    missing = [
        label
        for label, kept in (
            ("birthday", keep_birthday),
            ("id", keep_id),
            ("email", keep_email),
            ("address", keep_address),
        )
        if not kept
    ]
    return row, variant + (f"-{'-'.join(missing)}" if missing else "")


def _namesake(base: CustomerRow, other: CustomerRow, rng: random.Random) -> CustomerRow:
    """Another person with ``base``'s name, often in the same city; everything else is ``other``'s."""
    addresses = other.addresses
    if base.addresses and other.addresses and rng.random() < 0.6:
        addresses = (
            other.addresses[0]._replace(province=base.addresses[0].province, city=base.addresses[0].city),
        )
    return other._replace(name=base.name, addresses=addresses, tags=(), created_at=None)


def _family_member(base: CustomerRow, other: CustomerRow) -> CustomerRow:
    """Another person of ``base``'s family: the same surname, phone and address; their own name."""
    surname_length = 2 if name_pinyin(base.name).surname_syllables == 2 else 1
    other_surname_length = 2 if name_pinyin(other.name).surname_syllables == 2 else 1
    name = base.name[:surname_length] + other.name[other_surname_length:]
    if name == base.name:
        name = base.name[:surname_length] + "小" + other.name[-1]
    return other._replace(
        name=name,
        id_number=None,
        phones=base.phones[:1] + other.phones[:1],
        addresses=base.addresses,
        tags=(),
        created_at=None,
    )


def generate(persons: int, *, seed: int = 20261123) -> list[LabelledRecord]:
    """Records of ``persons`` people and their duplicates, plus look-alikes (new people), shuffled."""
    rng = random.Random(seed)  # noqa: S311 -- test data, not security
    demo = DemoCustomerGenerator(seed=seed, now=dt.datetime(2026, 11, 23, tzinfo=dt.UTC))
    base_rows = [row._replace(tags=(), created_at=None) for row in demo.rows(persons)]
    records = [LabelledRecord(person, row, "original") for person, row in enumerate(base_rows)]
    next_person = persons
    for person, base in enumerate(base_rows):
        draw = rng.random()
        copies = 2 if draw < 0.1 else (1 if draw < 0.45 else 0)
        for _copy in range(copies):
            row, variant = _duplicate(base, rng)
            records.append(LabelledRecord(person, row, variant))
        look_alike = rng.random()
        if look_alike < 0.1:
            other = demo.row(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))._replace(gender=base.gender)
            if other.id_number and base.id_number and other.birthday == base.birthday:
                continue
            records.append(LabelledRecord(next_person, _namesake(base, other, rng), "namesake"))
            next_person += 1
        elif look_alike < 0.15 and base.phones:
            other = demo.row(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
            records.append(LabelledRecord(next_person, _family_member(base, other), "family"))
            next_person += 1
    rng.shuffle(records)
    return records


def load(records: list[LabelledRecord], *, batch_size: int = 2000) -> dict[int, int]:
    """Write the records through the bulk path; returns {customer id: person}."""
    from kehu.customers.models import Customer

    writer = CustomerBulkWriter()
    person_of_code: dict[str, int] = {}
    for start in range(0, len(records), batch_size):
        batch = records[start : start + batch_size]
        codes = writer.write_batch([record.row for record in batch])
        person_of_code.update(zip(codes, (record.person for record in batch), strict=True))
    ids = dict(Customer.objects.filter(code__in=list(person_of_code)).values_list("code", "id"))
    return {ids[code]: person for code, person in person_of_code.items()}


THRESHOLDS: Final = (0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def measure(*, persons: int = 2000, seed: int = 20261123) -> dict[str, Any]:
    """Generate, load, scan (at the lowest threshold listed) and evaluate at every threshold."""
    from kehu.dataops.models import DuplicatePair
    from kehu.dataops.services.dedup.evaluation import evaluate
    from kehu.dataops.services.dedup.scan import dedup_threshold, scan_run, scan_start

    records = generate(persons, seed=seed)
    person_of = load(records)
    scan = scan_run(scan_start(actor=None, threshold=min(THRESHOLDS)))
    scored = list(
        DuplicatePair.objects.filter(scan=scan).values_list("customer_a_id", "customer_b_id", "score")
    )
    by_threshold = {
        threshold: evaluate([(a, b) for a, b, score in scored if score >= threshold], person_of).as_dict()
        for threshold in THRESHOLDS
    }
    default = dedup_threshold()
    at_default = evaluate([(a, b) for a, b, score in scored if score >= default], person_of)
    return {
        "persons": persons,
        "records": len(records),
        "threshold": default,
        "at_default": at_default.as_dict(),
        "by_threshold": by_threshold,
        "variants": _variant_counts(records),
        "scan": {"candidates": scan.stats.get("candidates"), "seconds": scan.stats.get("seconds")},
    }


def _variant_counts(records: list[LabelledRecord]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in records:
        kind = record.variant.split("-")[0].split("+")[0]
        counts[kind] = counts.get(kind, 0) + 1
    return counts
