"""Money in templates: integer fen shown as ¥ with two decimals, never through floats."""

from __future__ import annotations

from django import template

from kehu.core.money import fen_to_str, format_fen

register = template.Library()


@register.filter
def yuan(fen: int | str | None) -> str:
    """1234 -> "¥12.34"; None -> "—"."""
    if fen is None or fen == "":
        return "—"
    return format_fen(int(fen))


@register.filter
def yuan_plain(fen: int | str | None) -> str:
    """1234 -> "12.34" (for input values)."""
    if fen is None or fen == "":
        return ""
    return fen_to_str(int(fen))


@register.filter
def ledger_amount(amount: int, kind: str) -> str:
    """A signed ledger movement: stored value as money, points and visits as whole numbers."""
    sign = "+" if amount > 0 else "-"
    if kind == "stored_value":
        return f"{sign}{format_fen(abs(int(amount)))}"
    return f"{sign}{abs(int(amount))}"


@register.filter
def ledger_balance(balance: int, kind: str) -> str:
    return format_fen(int(balance)) if kind == "stored_value" else str(balance)
