"""Card numbers: generated with their Luhn digit, or typed and scanned at the counter.

Letters and digits (spaces and hyphens dropped), 4 to 32 characters, unique. A number that
looks like one of ours (12 digits starting with ``88``) must pass the Luhn check; other
numbers (cards pre-printed by another system) are taken as they are.
"""

from __future__ import annotations

import re
from typing import Any

from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from kehu.core.errors import ValidationFailed
from kehu.core.sequences import advance_to_at_least, reserve_numbers
from kehu.loyalty.models import CARD_NUMBER_SEQUENCE, Card, format_card_number, luhn_is_valid
from kehu.loyalty.services.cards._common import CardNumberTaken

CARD_NUMBER_PREFIX = "88"
OUR_NUMBER_LENGTH = 12
NUMBER_PATTERN = re.compile(r"^[0-9A-Z]{4,32}$")


def card_number_new() -> str:
    """A fresh number with its Luhn digit; skips numbers someone typed in by hand."""
    while True:
        number = format_card_number(reserve_numbers(CARD_NUMBER_SEQUENCE)[0], prefix=CARD_NUMBER_PREFIX)
        if not Card.objects.filter(number=number).exists():
            return number


def normalise_card_number(raw: Any, *, field: str = "number") -> str:
    """The number as stored: upper case, without spaces or hyphens; refused when malformed."""
    number = re.sub(r"[\s\-]", "", str(raw or "")).upper()
    if not NUMBER_PATTERN.match(number):
        raise ValidationFailed.for_field(field, _("A card number has 4 to 32 letters or digits."))
    if looks_like_ours(number) and not luhn_is_valid(number):
        raise ValidationFailed.for_field(
            field, _("The check digit does not match: a digit was probably mistyped.")
        )
    return number


def looks_like_ours(number: str) -> bool:
    return len(number) == OUR_NUMBER_LENGTH and number.isdigit() and number.startswith(CARD_NUMBER_PREFIX)


def _claim_number(raw: Any, *, field: str = "number") -> str:
    if raw in (None, ""):
        return card_number_new()
    number = normalise_card_number(raw, field=field)
    if Card.objects.filter(number=number).exists():
        raise _number_taken(number, field)
    if looks_like_ours(number):
        # A pre-printed card of our own series: the generator must never hand it out again.
        advance_to_at_least(CARD_NUMBER_SEQUENCE, int(number[len(CARD_NUMBER_PREFIX) : -1]))
    return number


def _number_taken(number: str, field: str) -> CardNumberTaken:
    return CardNumberTaken(
        _("Card number %(number)s is already in use.") % {"number": number},
        fields={field: [_("Already in use.")]},
        number=number,
    )


def _create_card(**values: Any) -> Card:
    card = Card(**values)
    try:
        with transaction.atomic():
            card.save(force_insert=True)
    except IntegrityError:
        raise _number_taken(card.number, "number") from None
    return card
