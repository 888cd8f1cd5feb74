"""Fuzzing the card endpoints with real rows behind their path parameters: no input may cause a 5xx.

The suite-wide fuzz (tests/api/test_schemathesis.py) mostly meets 404s here, because its world
has no card; this one gives every path parameter an existing card, card type, tier or rule.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from kehu.accounts.services import token_create
from kehu.wsgi import application
from tests.loyalty.cards_helpers import issue, programme

schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", application).include(
    path_regex=r"^/api/v1/(cards|card-types|tiers|bonus-rules|ledger)"
)


@pytest.fixture
def keep_connection_open() -> Any:
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def card_world(admin_user: Any, keep_connection_open: Any) -> dict[str, Any]:
    world = programme()
    card = issue(world["stored"])
    return {
        "admin": admin_user,
        "number": card.number,
        "code": "sv",
        "rule_id": world["stored"].bonus_rules.order_by("id").values_list("pk", flat=True).first(),
    }


@pytest.mark.django_db
@schema.parametrize()
@settings(
    max_examples=12,
    derandomize=True,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_no_input_makes_the_card_api_fail_with_a_server_error(case: Any, card_world: dict[str, Any]) -> None:
    _token, plaintext = token_create(actor=None, user=card_world["admin"], name="fuzz")
    for name in list(case.path_parameters or {}):
        if name in card_world:
            case.path_parameters[name] = card_world[name]
    case.call_and_validate(headers={"Authorization": f"Bearer {plaintext}"}, checks=[not_a_server_error])
