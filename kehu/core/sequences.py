"""Public numbers (customer codes, card numbers) handed out from named, locked counters."""

from __future__ import annotations

from django.db import transaction

from kehu.core.models import NumberSequence


def reserve_numbers(name: str, count: int = 1) -> range:
    """Reserve ``count`` consecutive numbers of the sequence ``name``; returns them as a range.

    The counter row is locked until the caller's transaction ends, so two writers never get
    the same number; a rolled-back transaction gives its numbers back.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    with transaction.atomic():
        NumberSequence.objects.get_or_create(name=name)
        sequence = NumberSequence.objects.select_for_update().get(name=name)
        first = sequence.last_value + 1
        sequence.last_value += count
        sequence.save(update_fields=["last_value"])
    return range(first, first + count)


def advance_to_at_least(name: str, value: int) -> None:
    """Make sure the next number handed out is above ``value`` (after codes were typed or imported)."""
    with transaction.atomic():
        sequence, _created = NumberSequence.objects.select_for_update().get_or_create(name=name)
        if sequence.last_value < value:
            sequence.last_value = value
            sequence.save(update_fields=["last_value"])
