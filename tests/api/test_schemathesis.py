"""Property-based fuzzing of /api/v1 from its own OpenAPI document: no input may cause a 5xx.

Runs in-process against the WSGI application, as an administrator with a bearer token, so every
operation is reached past authentication. Kept small and derandomised so it is fast and repeatable.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from kehu.accounts.services import token_create
from kehu.wsgi import application

schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", application)


@pytest.fixture
def keep_connection_open():
    """Requests made outside Django's test client would close the test's database connection.

    Django's own test client disconnects ``close_old_connections`` for the same reason; without
    this, PostgreSQL loses the test transaction after the first request.
    """
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def fuzz_world(admin_user, departments, keep_connection_open):
    """Real rows for path parameters, so fuzzed bodies reach the services, not only the 404 path."""
    from kehu.core.audit import audit_record
    from kehu.customers.models import SavedView
    from kehu.customers.services import custom_field_create, customer_create
    from tests.factories import RoleFactory, UserFactory

    clerk = UserFactory(username="fuzz-target", department=departments["store_c"], phone="13800138000")
    token, _plaintext = token_create(actor=None, user=clerk, name="fuzz-target")
    customer = customer_create(
        actor=None,
        data={
            "name": "张三",
            "phones": [{"number": "13800138000"}],
            "department_id": departments["store_c"].pk,
        },
    )
    custom_field_create(actor=None, key="level", label="等级", kind="choice", choices=["gold", "silver"])
    return {
        "code": customer.code,
        "key": "level",
        "view_id": SavedView.objects.create(user=admin_user, name="fuzz-view").pk,
        "admin": admin_user,
        "user_id": clerk.pk,
        "role_id": RoleFactory(name="fuzz-role", permissions=["users.view"]).pk,
        "department_id": departments["store_b"].pk,
        "token_id": token.pk,
        "sequence": audit_record(actor=None, action="test.fuzz").sequence,
    }


@pytest.mark.django_db
@schema.parametrize()
@settings(
    max_examples=8,
    derandomize=True,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_no_input_makes_the_api_fail_with_a_server_error(case, fuzz_world):
    # given a fresh token per example (an earlier example may have revoked the previous one)
    _token, plaintext = token_create(actor=None, user=fuzz_world["admin"], name="fuzz")
    # and, for even generated ids (and keys of even length), one that exists (odd ones keep probing
    # the not-found path)
    for name, value in (case.path_parameters or {}).items():
        if (
            name in fuzz_world
            and isinstance(value, (int, str))
            and (value if isinstance(value, int) else len(value)) % 2 == 0
        ):
            case.path_parameters[name] = fuzz_world[name]
    # when / then
    case.call_and_validate(headers={"Authorization": f"Bearer {plaintext}"}, checks=[not_a_server_error])
