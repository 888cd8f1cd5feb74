"""The card programme the loyalty page tests run on: a tier, a stored-value card with a bonus rule, a year card."""

from __future__ import annotations

from typing import Any

from kehu.loyalty.services.programme import bonus_rule_create, card_type_create, tier_create


def make_programme() -> dict[str, Any]:
    normal = tier_create(actor=None, data={"code": "normal", "name": "普通", "rank": 1})
    stored = card_type_create(
        actor=None,
        data={
            "code": "sv",
            "name": "储值卡",
            "kind": "stored_value",
            "price_fen": 100000,
            "initial_value_fen": 100000,
        },
    )
    bonus_rule_create(actor=None, card_type=stored, min_payment_fen=100000, bonus_fen=10000)
    year = card_type_create(
        actor=None,
        data={"code": "year", "name": "年卡", "kind": "period", "price_fen": 199900, "validity_days": 365},
    )
    return {"normal": normal, "stored": stored, "year": year}
