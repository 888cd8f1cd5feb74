"""The scope and permission matrix over the data-operations API: exports, data quality, duplicate
detection and imports (merges are in test_merge_api_matrix.py).

``DATAOPS_ENDPOINTS`` is meant for tests/api/test_scope_matrix.py's completeness check too.

Three kinds of answer do not fit :func:`tests.scope_matrix.run_case` as it stands, and are run
by :func:`run_dataops_case` here:

- an answer that is not ``{"items": [...]}`` (a file, a bare list, the quality report): the
  out-of-scope caller gets 200 and ``HIDDEN[name]`` proves the target is left out;
- a job that belongs to the user who asked for it (exports): the ``other_user`` variant holds
  every permission with scope "all", but the job is someone else's, so 404 or absent;
- an upload (``Upload``): sent as multipart instead of JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kehu.customers.services import customer_create
from tests.dataops.api_matrix_targets import (
    IMPORT_ROWS,
    Upload,
    UploadingClient,
    background_file_has,
    check_body,
    checked_import,
    csv_bytes,
    done_import,
    error_file,
    export_body,
    export_job,
    file_has,
    import_checked,
    import_configured,
    import_ran,
    import_undone,
    import_uploaded,
    link_renewed,
    listed,
    not_listed,
    quality_counts_target,
    quality_leaves_target_out,
    scan,
    scan_ran,
    stale_store_c_customer,
    store_c_card,
    store_c_customer,
    store_c_order,
    store_c_pair,
    template,
    uploaded_import,
)
from tests.scope_matrix import (
    ALLOWED,
    ANONYMOUS,
    DEPARTMENT_SCOPE_VARIANTS,
    NO_PERMISSION,
    OTHER_SCOPE,
    Endpoint,
    ScopeVariant,
    World,
    run_case,
    scope_cases,
    state_of,
)

SCOPED = DEPARTMENT_SCOPE_VARIANTS
# Holds everything the allowed caller holds, with scope "all": only the job's owner differs.
OTHER_USER = (ScopeVariant("other_user"),)
EXPORT = ("customers.view", "customers.export")
DUPLICATES_VIEW = ("duplicates.view", "customers.view")


@pytest.fixture(autouse=True)
def data_dir(settings: Any, tmp_path: Path) -> None:
    settings.DATA_DIR = tmp_path / "data"


@pytest.fixture
def dataops_world(scope_world: World) -> World:
    make_client = scope_world.api_as
    scope_world.api_as = lambda user: UploadingClient(make_client(user))
    return scope_world


DATAOPS_ENDPOINTS = [
    # exports
    Endpoint(
        "exports_create",
        "POST",
        "/exports",
        permissions=EXPORT,
        required="customers.export",
        target=store_c_customer,
        key="code",
        body=export_body("customers"),
        scope_variants=SCOPED,
        check_allowed=file_has("code"),
    ),
    Endpoint(
        "exports_create_without_view",
        "POST",
        "/exports",
        permissions=EXPORT,
        required="customers.view",
        body=export_body("customers"),
    ),
    Endpoint(
        "exports_create_background",
        "POST",
        "/exports",
        permissions=EXPORT,
        required="customers.export",
        target=store_c_customer,
        key="code",
        body=export_body("customers", background=True),
        expected=202,
        scope_variants=SCOPED,
        check_allowed=background_file_has("code"),
    ),
    Endpoint(
        "exports_create_cards",
        "POST",
        "/exports",
        permissions=("cards.view", "cards.export"),
        required="cards.export",
        target=store_c_card,
        key="number",
        body=export_body("cards"),
        scope_variants=SCOPED,
        check_allowed=file_has("number"),
    ),
    Endpoint(
        "exports_create_orders",
        "POST",
        "/exports",
        permissions=("orders.view", "orders.export"),
        required="orders.export",
        target=store_c_order,
        key="number",
        body=export_body("orders"),
        scope_variants=SCOPED,
        check_allowed=file_has("number"),
    ),
    Endpoint(
        "exports_list",
        "GET",
        "/exports",
        target=export_job,
        scope_variants=OTHER_USER,
        check_allowed=listed,
    ),
    Endpoint("exports_get", "GET", "/exports/{key}", target=export_job, scope_variants=OTHER_USER),
    Endpoint(
        "exports_download",
        "GET",
        "/exports/download/{key}",
        permissions=EXPORT,
        required="customers.export",
        target=export_job,
        key="plain_token",
        scope_variants=OTHER_USER,
    ),
    Endpoint(
        "exports_link",
        "POST",
        "/exports/{key}/link",
        target=export_job,
        scope_variants=OTHER_USER,
        check_allowed=link_renewed,
    ),
    # data quality
    Endpoint(
        "quality_report",
        "GET",
        "/data-quality",
        permissions=("data_quality.view",),
        required="data_quality.view",
        target=stale_store_c_customer,
        key="code",
        scope_variants=SCOPED,
        check_allowed=quality_counts_target,
    ),
    # duplicates: scans are over every customer, so not scoped
    Endpoint(
        "duplicates_scan_start",
        "POST",
        "/duplicates/scans",
        permissions=("duplicates.view", "duplicates.change"),
        required="duplicates.change",
        body=lambda world: {},
        expected=202,
        check_allowed=scan_ran,
    ),
    Endpoint(
        "duplicates_scan_start_without_view",
        "POST",
        "/duplicates/scans",
        permissions=("duplicates.view", "duplicates.change"),
        required="duplicates.view",
        body=lambda world: {},
        expected=202,
    ),
    Endpoint(
        "duplicates_scan_list",
        "GET",
        "/duplicates/scans",
        permissions=("duplicates.view",),
        required="duplicates.view",
        target=scan,
        check_allowed=listed,
    ),
    Endpoint(
        "duplicates_scan_get",
        "GET",
        "/duplicates/scans/{key}",
        permissions=("duplicates.view",),
        required="duplicates.view",
        target=scan,
    ),
    Endpoint(
        "duplicates_pairs",
        "GET",
        "/duplicates/pairs",
        permissions=DUPLICATES_VIEW,
        required="duplicates.view",
        target=store_c_pair,
        is_list=True,
        scope_variants=SCOPED,
    ),
    Endpoint(
        "duplicates_pair_get",
        "GET",
        "/duplicates/pairs/{key}",
        permissions=DUPLICATES_VIEW,
        required="duplicates.view",
        target=store_c_pair,
        scope_variants=SCOPED,
    ),
    Endpoint(
        "duplicates_check",
        "POST",
        "/duplicates/check",
        permissions=("customers.view",),
        required="customers.view",
        target=store_c_customer,
        key="code",
        body=check_body,
        is_list=True,
        scope_variants=SCOPED,
    ),
    Endpoint(
        "customers_duplicates_check",
        "POST",
        "/customers/duplicates-check",
        permissions=("customers.view",),
        required="customers.view",
        target=store_c_customer,
        key="code",
        body=check_body,
        is_list=True,
        scope_variants=SCOPED,
    ),
    # imports: not scoped by department (api/imports.py), so no other-scope cases
    Endpoint(
        "imports_create",
        "POST",
        "/imports",
        permissions=("imports.create",),
        required="imports.create",
        body=lambda world: Upload(file=("matrix.csv", csv_bytes(IMPORT_ROWS)), kind="customers"),
        expected=201,
        check_allowed=import_uploaded,
    ),
    Endpoint(
        "imports_list",
        "GET",
        "/imports",
        permissions=("imports.view",),
        required="imports.view",
        target=uploaded_import,
        is_list=True,
    ),
    Endpoint(
        "imports_get",
        "GET",
        "/imports/{key}",
        permissions=("imports.view",),
        required="imports.view",
        target=uploaded_import,
    ),
    Endpoint(
        "imports_configure",
        "PATCH",
        "/imports/{key}",
        permissions=("imports.view", "imports.change"),
        required="imports.change",
        target=uploaded_import,
        body=lambda world: {"match_mode": "overwrite"},
        check_allowed=import_configured,
    ),
    Endpoint(
        "imports_dry_run",
        "POST",
        "/imports/{key}/dry-run",
        permissions=("imports.view", "imports.create"),
        required="imports.create",
        target=uploaded_import,
        expected=202,
        check_allowed=import_checked,
    ),
    Endpoint(
        "imports_run",
        "POST",
        "/imports/{key}/run",
        permissions=("imports.view", "imports.create"),
        required="imports.create",
        target=uploaded_import,
        expected=202,
        check_allowed=import_ran,
    ),
    Endpoint(
        "imports_undo",
        "POST",
        "/imports/{key}/undo",
        permissions=("imports.view", "imports.delete"),
        required="imports.delete",
        target=done_import,
        check_allowed=import_undone,
    ),
    Endpoint(
        "imports_errors",
        "GET",
        "/imports/{key}/errors",
        permissions=("imports.view",),
        required="imports.view",
        target=checked_import,
        check_allowed=error_file,
    ),
    Endpoint(
        "import_templates",
        "GET",
        "/import-templates",
        permissions=("imports.view",),
        required="imports.view",
        target=template,
        check_allowed=listed,
    ),
]

# Out-of-scope answers that are 200 but not {"items": [...]}: how they leave the target out.
HIDDEN: dict[str, Callable[[World, Any], None]] = {
    "exports_create": file_has("code", shown=False),
    "exports_create_background": background_file_has("code", shown=False),
    "exports_create_cards": file_has("number", shown=False),
    "exports_create_orders": file_has("number", shown=False),
    "exports_list": not_listed,
    "quality_report": quality_leaves_target_out,
}
# What such a call may add even when the caller's scope leaves every row out: an export is
# audited, and a background one is a job.
_EXPORT_AUDIT = {"core.AuditEvent": 1}
WRITES: dict[str, dict[str, int]] = {
    "exports_create": _EXPORT_AUDIT,
    "exports_create_background": {**_EXPORT_AUDIT, "dataops.ExportJob": 1},
    "exports_create_cards": _EXPORT_AUDIT,
    "exports_create_orders": _EXPORT_AUDIT,
}


def _without(state: dict[str, Any], labels: dict[str, int]) -> dict[str, Any]:
    dropped = {*labels, "audit_sequences"} if "core.AuditEvent" in labels else set(labels)
    return {key: value for key, value in state.items() if key not in dropped}


def run_dataops_case(endpoint: Endpoint, case: str, world: World) -> Any:
    """:func:`run_case`, with the out-of-scope answers of ``HIDDEN`` checked by their own rule."""
    world.extra["case"] = case
    hidden = HIDDEN.get(endpoint.name)
    if hidden is None or not case.startswith(OTHER_SCOPE):
        return run_case(endpoint, case, world)
    # given a caller who may call the endpoint, but whose scope does not reach the target
    variant = next(v for v in endpoint.scope_variants if case == f"{OTHER_SCOPE}{v.name}")
    world.caller = world.make_user(
        permissions=[p for p in endpoint.permissions if p not in variant.withhold],
        scope=variant.data_scope,
        department=world.departments[variant.department],
    )
    world.target = endpoint.target(world) if endpoint.target else None
    client = world.extra["client"] = world.api_as(world.caller)
    body = endpoint.body(world) if endpoint.body else None
    before = state_of(world.target)
    # when
    response = client.request(endpoint.method, f"/api/v1{endpoint.url(world)}", body)
    # then the answer leaves the target out, and nothing changed but what the call may write
    assert response.status_code == endpoint.expected, response.content
    hidden(world, response)
    after = state_of(world.target)
    writes = WRITES.get(endpoint.name, {})
    for label, added in writes.items():
        assert after[label] == before[label] + added, label
    assert _without(after, writes) == _without(before, writes)
    return response


@pytest.mark.django_db
@pytest.mark.parametrize(("endpoint", "case"), scope_cases(DATAOPS_ENDPOINTS))
def test_dataops_endpoint_scope(endpoint: Endpoint, case: str, dataops_world: World) -> None:
    run_dataops_case(endpoint, case, dataops_world)


def test_every_dataops_operation_is_in_the_matrix() -> None:
    import re

    from kehu.api import api

    tags = {"exports", "quality", "dedup", "imports"}
    published = {
        (method.upper(), re.sub(r"\{[^}]+\}", "{}", path.removeprefix("/api/v1")))
        for path, operations in api.get_openapi_schema()["paths"].items()
        for method in operations
        if tags & set(operations[method].get("tags", []))
    }
    covered = {(endpoint.method, endpoint.path.replace("{key}", "{}")) for endpoint in DATAOPS_ENDPOINTS}
    assert published == covered


def test_cases_cover_every_kind_of_caller() -> None:
    cases = {param.id for param in scope_cases(DATAOPS_ENDPOINTS)}
    assert {f"exports_get-{kind}_case" for kind in (ANONYMOUS, "other_scope_other_user", ALLOWED)} <= cases
    assert f"exports_download-{NO_PERMISSION}_case" in cases


@pytest.mark.django_db
def test_the_matrix_catches_an_export_that_leaks_another_scope(dataops_world: World) -> None:
    # given a spec whose "out of scope" customer actually sits in the caller's own store
    leaky = Endpoint(
        "exports_create",
        "POST",
        "/exports",
        permissions=EXPORT,
        required="customers.export",
        target=lambda world: customer_create(
            actor=None, data={"name": "近处客户", "department_id": world.departments["store_a"].pk}
        ),
        key="code",
        body=lambda world: {"source": "customers", "format": "csv", "background": False},
        scope_variants=(ScopeVariant("department", data_scope="department"),),
    )
    # when / then the file that holds it is reported instead of passing silently
    with pytest.raises(AssertionError):
        run_dataops_case(leaky, "other_scope_department", dataops_world)
