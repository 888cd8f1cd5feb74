"""Chinese resident identity numbers (居民身份证号码, GB 11643-1999).

An 18-character number is: a 6-digit administrative region code (GB/T 2260), the birthday as
YYYYMMDD, a 3-digit sequence number whose parity gives the gender (odd: male), and a check
character computed with ISO 7064 MOD 11-2 ("X" stands for 10). Cards issued before 1999 carry
a 15-digit number (YYMMDD, 19xx century, no check character); it is upgraded to 18 on entry so
that one person has one stored form.

Masking for display is kehu.core.masking.mask_id_number (region prefix + last 4).
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from dataclasses import dataclass
from typing import Final, Literal

from django.utils import timezone
from django.utils.translation import gettext as _

from kehu.core.errors import ValidationFailed

Gender = Literal["male", "female"]

# ISO 7064 MOD 11-2 weights are 2**(17 - position) mod 11, for positions 0..16.
CHECK_WEIGHTS: Final = tuple(2 ** (17 - position) % 11 for position in range(17))
# The check character for each remainder of the weighted sum modulo 11.
CHECK_CHARACTERS: Final = "10X98765432"

EARLIEST_BIRTH_YEAR: Final = 1900

# The 34 province-level divisions of GB/T 2260, by the first two digits of the region code.
# These are data (official names), not interface text, so they are not translated.
PROVINCES: Final[dict[str, str]] = {
    "11": "北京市",
    "12": "天津市",
    "13": "河北省",
    "14": "山西省",
    "15": "内蒙古自治区",
    "21": "辽宁省",
    "22": "吉林省",
    "23": "黑龙江省",
    "31": "上海市",
    "32": "江苏省",
    "33": "浙江省",
    "34": "安徽省",
    "35": "福建省",
    "36": "江西省",
    "37": "山东省",
    "41": "河南省",
    "42": "湖北省",
    "43": "湖南省",
    "44": "广东省",
    "45": "广西壮族自治区",
    "46": "海南省",
    "50": "重庆市",
    "51": "四川省",
    "52": "贵州省",
    "53": "云南省",
    "54": "西藏自治区",
    "61": "陕西省",
    "62": "甘肃省",
    "63": "青海省",
    "64": "宁夏回族自治区",
    "65": "新疆维吾尔自治区",
    "71": "台湾省",
    "81": "香港特别行政区",
    "82": "澳门特别行政区",
}


@dataclass(frozen=True, slots=True)
class IdNumber:
    """A valid 18-character resident ID number and what it says about its holder."""

    number: str
    region_code: str
    province: str
    birthday: dt.date
    gender: Gender


def check_character(first_17_digits: str) -> str:
    """The ISO 7064 MOD 11-2 check character for the first 17 digits of an ID number."""
    if not (
        len(first_17_digits) == len(CHECK_WEIGHTS) and first_17_digits.isascii() and first_17_digits.isdigit()
    ):
        raise ValueError("the check character needs exactly 17 digits")
    # The weights are 2**17 … 2**1 (mod 11), and 13 = 2 (mod 11): read in base 13, the digits
    # give half the weighted sum (mod 11) in one C call instead of 17 multiplications.
    return CHECK_CHARACTERS[2 * int(first_17_digits, 13) % 11]


def parse_id_number(
    raw: str, *, field: str = "id_number", label: str | None = None, today: dt.date | None = None
) -> IdNumber:
    """Validate a typed ID number (18 characters, or the old 15 digits) and read it.

    Refuses, with a translated reason keyed by ``field``: a wrong length or character, an
    unknown province, a birthday that is no calendar date, lies in the future (after ``today``,
    default: the local date) or before 1900, and a check character that does not match.
    """
    # NFKC turns full-width digits and Ｘ, typed in a Chinese input method's full-width mode, into ASCII.
    number = unicodedata.normalize("NFKC", raw).strip().upper()
    if not number:
        raise _refusal(field, label, _("Enter an ID number."))
    if len(number) == 15 and number.isascii() and number.isdigit():
        # Pre-1999 numbers: YYMMDD in the 20th century and no check character.
        body = f"{number[:6]}19{number[6:]}"
        number = body + check_character(body)
    elif len(number) != 18:
        raise _refusal(field, label, _("An ID number has 18 characters."))
    body, given_check = number[:17], number[17]
    if not (body.isascii() and body.isdigit() and (given_check.isdigit() or given_check == "X")):
        raise _refusal(field, label, _("An ID number has 17 digits followed by a digit or X."))
    province = PROVINCES.get(number[:2])
    if province is None:
        raise _refusal(field, label, _("The ID number does not start with a valid province code."))
    try:
        birthday = dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        raise _refusal(field, label, _("The birthday in the ID number is not a real date.")) from None
    if birthday > (today or timezone.localdate()) or birthday.year < EARLIEST_BIRTH_YEAR:
        raise _refusal(field, label, _("The birthday in the ID number is out of range."))
    if check_character(body) != given_check:
        raise _refusal(
            field, label, _("The ID number's check digit does not match; please check for a typo.")
        )
    return IdNumber(
        number=number,
        region_code=number[:6],
        province=province,
        birthday=birthday,
        gender="male" if int(number[16]) % 2 else "female",
    )


def id_number_consistency_errors(
    id_number: IdNumber, *, birthday: dt.date | None, gender: str | None
) -> list[str]:
    """Translated reasons why a record's birthday or gender disagree with its ID number.

    A missing birthday or a gender other than "male"/"female" (unknown, not given) is not a
    disagreement: the ID number may fill it in, but cannot contradict it.
    """
    errors: list[str] = []
    if birthday is not None and birthday != id_number.birthday:
        errors.append(_("The birthday does not match the ID number."))
    if gender in ("male", "female") and gender != id_number.gender:
        errors.append(_("The gender does not match the ID number."))
    return errors


def _refusal(field: str, label: str | None, reason: str) -> ValidationFailed:
    return ValidationFailed.for_field(field, reason, label=label or _("ID number"))
