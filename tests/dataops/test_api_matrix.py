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

import csv
import datetime as dt
import io
import secrets
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from kehu.accounts.models import User
from kehu.commerce.models import Order
from kehu.commerce.services import LineInput, PaymentInput, order_create
from kehu.customers.models import Customer
from kehu.customers.services import customer_create
from kehu.dataops import jobs_imports
from kehu.dataops.models import (
    DedupScan,
    DuplicatePair,
    ExportJob,
    ExportStatus,
    ImportJob,
    ImportStatus,
    MappingTemplate,
)
from kehu.dataops.services.exporting.runs import EXPORT_FOLDER, token_hash
from kehu.dataops.services.importing import jobs
from kehu.loyalty.models import Card, CardType
from kehu.loyalty.services import card_issue
from tests.factories import UserFactory
from tests.loyalty.cards_helpers import programme
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

IMPORT_HEADERS = ["姓名", "手机", "城市"]
IMPORT_ROWS = [["矩阵甲", "13811110001", "成都"], ["矩阵乙", "13811110002", "成都"]]
BAD_ROW = ["", "13811110003", "成都"]  # no name: refused with a reason


@pytest.fixture(autouse=True)
def data_dir(settings: Any, tmp_path: Path) -> None:
    settings.DATA_DIR = tmp_path / "data"


class Upload(dict[str, Any]):
    """A multipart body: form fields, and files as ``(file name, bytes)``."""


class _UploadingClient:
    """The matrix's API client, which also sends an :class:`Upload` as multipart."""

    def __init__(self, api: Any) -> None:
        self.api = api

    def request(self, method: str, path: str, body: Any = None) -> Any:
        if isinstance(body, Upload):
            data = {
                name: SimpleUploadedFile(value[0], value[1]) if isinstance(value, tuple) else value
                for name, value in body.items()
            }
            return self.api.client.post(path, data, **self.api.headers)
        return self.api.request(method, path, body)


@pytest.fixture
def dataops_world(scope_world: World) -> World:
    make_client = scope_world.api_as
    scope_world.api_as = lambda user: _UploadingClient(make_client(user))
    return scope_world


# --- targets -------------------------------------------------------------------------------------
def _store_c_customer(world: World, name: str = "远方客户", phone: str = "13966660000") -> Customer:
    return customer_create(
        actor=None,
        data={"name": name, "phones": [phone], "department_id": world.departments["store_c"].pk},
        allow_duplicate=True,
    )


def store_c_card(world: World) -> Card:
    if not CardType.objects.filter(code="sv").exists():
        programme()
    customer = _store_c_customer(world, "持卡客户", "13966661111")
    return card_issue(
        actor=None, card_type=CardType.objects.get(code="sv"), customer=customer, payment_method="cash"
    ).card


def store_c_order(world: World) -> Order:
    return order_create(
        actor=None,
        customer=_store_c_customer(world, "下单客户", "13966662222"),
        lines=[LineInput(name="剪发", unit_price_fen=8_800)],
        payments=[PaymentInput(method="cash", amount_fen=8_800)],
    ).order


def _stale_store_c_customer(world: World) -> Customer:
    customer = _store_c_customer(world)
    Customer.objects.filter(pk=customer.pk).update(updated_at=timezone.now() - dt.timedelta(days=800))
    customer.refresh_from_db()
    return customer


def _store_c_pair(world: World) -> DuplicatePair:
    first = _store_c_customer(world, "远方客户", "13966660001")
    second = _store_c_customer(world, "远方客户", "13966660002")
    return DuplicatePair.objects.create(customer_a=first, customer_b=second, score=0.9, cluster=first.pk)


def _scan(world: World) -> DedupScan:
    return DedupScan.objects.create(threshold=0.6, status="done", finished_at=timezone.now())


def _job_owner(world: World) -> User:
    """The caller, except in the other-user case (and for an anonymous caller): someone else."""
    if world.caller is not None and not world.extra["case"].startswith(OTHER_SCOPE):
        return world.caller
    return UserFactory(department=world.departments["store_c"])


def _export_job(world: World) -> ExportJob:
    """A finished background export with its file; ``plain_token`` is the link's token."""
    token = secrets.token_urlsafe(32)
    stored = f"{EXPORT_FOLDER}/{uuid.uuid4().hex}.csv"
    path = Path(settings.DATA_DIR) / stored
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("\ufeff客户编号\r\nC000001\r\n".encode())
    now = timezone.now()
    job = ExportJob.objects.create(
        source="customers",
        params={},
        file_format="csv",
        status=ExportStatus.DONE,
        rows=1,
        file_name="customers.csv",
        stored_path=stored,
        token_hash=token_hash(token),
        expires_at=now + dt.timedelta(hours=1),
        created_by=_job_owner(world),
        finished_at=now,
    )
    job.plain_token = token  # type: ignore[attr-defined]
    return job


def _csv_bytes(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows([IMPORT_HEADERS, *rows])
    return out.getvalue().encode("utf-8")


def _uploaded_import(world: World, rows: list[list[str]] | None = None) -> ImportJob:
    admin = world.extra["admin"]
    return jobs.import_create(
        actor=admin,
        kind="customers",
        source=io.BytesIO(_csv_bytes(rows or IMPORT_ROWS)),
        file_name="matrix.csv",
    )


def _checked_import(world: World) -> ImportJob:
    """A dry-run with one refused row, so there is an error file."""
    job = _uploaded_import(world, [*IMPORT_ROWS, BAD_ROW])
    jobs.import_queue(actor=world.extra["admin"], job=job, dry_run=True)
    jobs_imports.import_run_task(job.pk, True)
    job.refresh_from_db()
    assert job.status == ImportStatus.CHECKED, job.message
    return job


def _done_import(world: World) -> ImportJob:
    job = _uploaded_import(world)
    jobs.import_queue(actor=world.extra["admin"], job=job, dry_run=False)
    jobs_imports.import_run_task(job.pk, False)
    job.refresh_from_db()
    assert job.status == ImportStatus.DONE, job.message
    return job


def _template(world: World) -> MappingTemplate:
    return MappingTemplate.objects.create(kind="customers", name="矩阵模板", mapping={"0": "name"})


# --- what an allowed call leaves behind -------------------------------------------------------------
def _content(response: Any) -> str:
    return b"".join(response.streaming_content).decode("utf-8-sig")


def _file_has(key: str, *, shown: bool = True) -> Callable[[World, Any], None]:
    """The exported file holds the target's ``key`` (or, ``shown=False``, does not)."""

    def check(world: World, response: Any) -> None:
        assert (getattr(world.target, key) in _content(response)) is shown

    return check


def _background_file_has(key: str, *, shown: bool = True) -> Callable[[World, Any], None]:
    """The background job is done, and the file behind its one-time link holds the target's ``key``."""

    def check(world: World, response: Any) -> None:
        body = response.json()
        assert body["status"] == ExportStatus.DONE, body
        client = world.extra.get("client") or world.api_as(world.caller)
        download = client.request("GET", body["download_url"])
        assert download.status_code == 200, download.content
        assert (getattr(world.target, key) in _content(download)) is shown

    return check


def _export_body(source: str, *, background: bool = False) -> Callable[[World], dict[str, Any]]:
    return lambda world: {"source": source, "format": "csv", "background": background}


def _listed(world: World, response: Any) -> None:
    assert world.target.pk in [item["id"] for item in response.json()]  # type: ignore[union-attr]


def _not_listed(world: World, response: Any) -> None:
    assert world.target.pk not in [item["id"] for item in response.json()]  # type: ignore[union-attr]


def _link_renewed(world: World, response: Any) -> None:
    job = ExportJob.objects.get(pk=world.target.pk)  # type: ignore[union-attr]
    assert job.token_hash == token_hash(response.json()["token"]) != token_hash(world.target.plain_token)  # type: ignore[union-attr]


def _quality_codes(body: dict[str, Any]) -> set[str]:
    codes = set(body["stale"]["examples"])
    codes |= {customer["code"] for customer in body["high_value_stale"]["customers"]}
    codes |= {
        code for field in body["fields"] for problem in field["problems"] for code in problem["examples"]
    }
    return codes


def _quality_counts_target(world: World, response: Any) -> None:
    body = response.json()
    assert body["total"] == 1
    assert world.target.code in body["stale"]["examples"]  # type: ignore[union-attr]


def _quality_leaves_target_out(world: World, response: Any) -> None:
    body = response.json()
    assert (body["total"], body["stale"]["count"]) == (0, 0)
    assert world.target.code not in _quality_codes(body)  # type: ignore[union-attr]


def _scan_ran(world: World, response: Any) -> None:
    assert DedupScan.objects.get(pk=response.json()["id"]).status == "done"


def _import_uploaded(world: World, response: Any) -> None:
    assert ImportJob.objects.get(pk=response.json()["id"]).file_name == "matrix.csv"


def _import_configured(world: World, response: Any) -> None:
    assert ImportJob.objects.get(pk=world.target.pk).match_mode == "overwrite"  # type: ignore[union-attr]


def _import_checked(world: World, response: Any) -> None:
    assert ImportJob.objects.get(pk=world.target.pk).status == ImportStatus.CHECKED  # type: ignore[union-attr]
    assert not Customer.objects.filter(name="矩阵甲").exists()


def _import_ran(world: World, response: Any) -> None:
    assert ImportJob.objects.get(pk=world.target.pk).status == ImportStatus.DONE  # type: ignore[union-attr]
    assert Customer.objects.filter(name__in=["矩阵甲", "矩阵乙"]).count() == 2


def _import_undone(world: World, response: Any) -> None:
    assert ImportJob.objects.get(pk=world.target.pk).undone_at is not None  # type: ignore[union-attr]
    assert not Customer.objects.filter(name__in=["矩阵甲", "矩阵乙"]).exists()


def _error_file(world: World, response: Any) -> None:
    assert "13811110003" in _content(response)


def _check_body(world: World) -> dict[str, Any]:
    return {"name": "远方客户", "phones": ["139-6666-0000"]}


DATAOPS_ENDPOINTS = [
    # exports
    Endpoint(
        "exports_create",
        "POST",
        "/exports",
        permissions=EXPORT,
        required="customers.export",
        target=_store_c_customer,
        key="code",
        body=_export_body("customers"),
        scope_variants=SCOPED,
        check_allowed=_file_has("code"),
    ),
    Endpoint(
        "exports_create_without_view",
        "POST",
        "/exports",
        permissions=EXPORT,
        required="customers.view",
        body=_export_body("customers"),
    ),
    Endpoint(
        "exports_create_background",
        "POST",
        "/exports",
        permissions=EXPORT,
        required="customers.export",
        target=_store_c_customer,
        key="code",
        body=_export_body("customers", background=True),
        expected=202,
        scope_variants=SCOPED,
        check_allowed=_background_file_has("code"),
    ),
    Endpoint(
        "exports_create_cards",
        "POST",
        "/exports",
        permissions=("cards.view", "cards.export"),
        required="cards.export",
        target=store_c_card,
        key="number",
        body=_export_body("cards"),
        scope_variants=SCOPED,
        check_allowed=_file_has("number"),
    ),
    Endpoint(
        "exports_create_orders",
        "POST",
        "/exports",
        permissions=("orders.view", "orders.export"),
        required="orders.export",
        target=store_c_order,
        key="number",
        body=_export_body("orders"),
        scope_variants=SCOPED,
        check_allowed=_file_has("number"),
    ),
    Endpoint(
        "exports_list",
        "GET",
        "/exports",
        target=_export_job,
        scope_variants=OTHER_USER,
        check_allowed=_listed,
    ),
    Endpoint("exports_get", "GET", "/exports/{key}", target=_export_job, scope_variants=OTHER_USER),
    Endpoint(
        "exports_download",
        "GET",
        "/exports/download/{key}",
        permissions=EXPORT,
        required="customers.export",
        target=_export_job,
        key="plain_token",
        scope_variants=OTHER_USER,
    ),
    Endpoint(
        "exports_link",
        "POST",
        "/exports/{key}/link",
        target=_export_job,
        scope_variants=OTHER_USER,
        check_allowed=_link_renewed,
    ),
    # data quality
    Endpoint(
        "quality_report",
        "GET",
        "/data-quality",
        permissions=("data_quality.view",),
        required="data_quality.view",
        target=_stale_store_c_customer,
        key="code",
        scope_variants=SCOPED,
        check_allowed=_quality_counts_target,
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
        check_allowed=_scan_ran,
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
        target=_scan,
        check_allowed=_listed,
    ),
    Endpoint(
        "duplicates_scan_get",
        "GET",
        "/duplicates/scans/{key}",
        permissions=("duplicates.view",),
        required="duplicates.view",
        target=_scan,
    ),
    Endpoint(
        "duplicates_pairs",
        "GET",
        "/duplicates/pairs",
        permissions=DUPLICATES_VIEW,
        required="duplicates.view",
        target=_store_c_pair,
        is_list=True,
        scope_variants=SCOPED,
    ),
    Endpoint(
        "duplicates_pair_get",
        "GET",
        "/duplicates/pairs/{key}",
        permissions=DUPLICATES_VIEW,
        required="duplicates.view",
        target=_store_c_pair,
        scope_variants=SCOPED,
    ),
    Endpoint(
        "duplicates_check",
        "POST",
        "/duplicates/check",
        permissions=("customers.view",),
        required="customers.view",
        target=_store_c_customer,
        key="code",
        body=_check_body,
        is_list=True,
        scope_variants=SCOPED,
    ),
    Endpoint(
        "customers_duplicates_check",
        "POST",
        "/customers/duplicates-check",
        permissions=("customers.view",),
        required="customers.view",
        target=_store_c_customer,
        key="code",
        body=_check_body,
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
        body=lambda world: Upload(file=("matrix.csv", _csv_bytes(IMPORT_ROWS)), kind="customers"),
        expected=201,
        check_allowed=_import_uploaded,
    ),
    Endpoint(
        "imports_list",
        "GET",
        "/imports",
        permissions=("imports.view",),
        required="imports.view",
        target=_uploaded_import,
        is_list=True,
    ),
    Endpoint(
        "imports_get",
        "GET",
        "/imports/{key}",
        permissions=("imports.view",),
        required="imports.view",
        target=_uploaded_import,
    ),
    Endpoint(
        "imports_configure",
        "PATCH",
        "/imports/{key}",
        permissions=("imports.view", "imports.change"),
        required="imports.change",
        target=_uploaded_import,
        body=lambda world: {"match_mode": "overwrite"},
        check_allowed=_import_configured,
    ),
    Endpoint(
        "imports_dry_run",
        "POST",
        "/imports/{key}/dry-run",
        permissions=("imports.view", "imports.create"),
        required="imports.create",
        target=_uploaded_import,
        expected=202,
        check_allowed=_import_checked,
    ),
    Endpoint(
        "imports_run",
        "POST",
        "/imports/{key}/run",
        permissions=("imports.view", "imports.create"),
        required="imports.create",
        target=_uploaded_import,
        expected=202,
        check_allowed=_import_ran,
    ),
    Endpoint(
        "imports_undo",
        "POST",
        "/imports/{key}/undo",
        permissions=("imports.view", "imports.delete"),
        required="imports.delete",
        target=_done_import,
        check_allowed=_import_undone,
    ),
    Endpoint(
        "imports_errors",
        "GET",
        "/imports/{key}/errors",
        permissions=("imports.view",),
        required="imports.view",
        target=_checked_import,
        check_allowed=_error_file,
    ),
    Endpoint(
        "import_templates",
        "GET",
        "/import-templates",
        permissions=("imports.view",),
        required="imports.view",
        target=_template,
        check_allowed=_listed,
    ),
]

# Out-of-scope answers that are 200 but not {"items": [...]}: how they leave the target out.
HIDDEN: dict[str, Callable[[World, Any], None]] = {
    "exports_create": _file_has("code", shown=False),
    "exports_create_background": _background_file_has("code", shown=False),
    "exports_create_cards": _file_has("number", shown=False),
    "exports_create_orders": _file_has("number", shown=False),
    "exports_list": _not_listed,
    "quality_report": _quality_leaves_target_out,
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
