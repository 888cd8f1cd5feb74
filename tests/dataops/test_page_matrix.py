"""The permission and scope matrix for the data-operations pages (exports, data quality, duplicate
detection, imports) and the 360 page's interactions panel (tests/web/page_matrix.py's cases).

``DATAOPS_PAGES`` is meant for tests/web/test_page_matrix.py too. Every case also proves that a
refused request leaves the dataops and engagement tables alone (page_matrix.py counts only the
accounts, audit and customer tables). Pages that do not fit a :class:`Page` get their own cases:

- ``OWNER_PAGES``: an export's link, file and renewal belong to the user who asked for it, so the
  out-of-scope caller is another user with every permission (404);
- ``LISTING_PAGES``: pages that list or search within the viewer's scope answer 200 to a viewer
  whose scope does not reach the record, and leave it out;
- the import error file, whose URL takes two arguments.

The merge pages are in test_merge_page_matrix.py.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.db import models
from django.test import Client
from django.urls import reverse

from kehu.accounts.models import Department, User
from kehu.core.permissions import all_permissions
from kehu.dataops import jobs_imports
from kehu.dataops.models import DedupScan, ExportJob, ImportJob, ImportStatus
from kehu.dataops.services.importing import jobs
from kehu.engagement.models import Interaction
from tests.dataops.api_matrix_targets import (
    csv_bytes,
    finished_export,
    scan,
    stale_store_c_customer,
    store_c_card,
    store_c_customer,
    store_c_order,
    store_c_pair,
)
from tests.factories import UserFactory
from tests.scope_matrix import COUNTED_MODELS
from tests.web.conftest import post
from tests.web.page_matrix import (
    ALLOWED,
    ANONYMOUS,
    NO_PERMISSION,
    Page,
    PageWorld,
    page_cases,
    run_page_case,
)

pytestmark = pytest.mark.django_db

OTHER_USER = "other_user_case"
OUT_OF_SCOPE = "out_of_scope_case"
IMPORT_HEADERS = ["姓名", "手机", "城市"]
IMPORT_ROWS = [["矩阵甲", "13811110001", "成都"], ["矩阵乙", "13811110002", "成都"]]
BAD_ROW = ["", "13811110003", "成都"]
ALL_EXPORTS = ("customers.export", "cards.export", "orders.export")


@pytest.fixture(autouse=True)
def data_dir(settings: Any, tmp_path: Path) -> None:
    settings.DATA_DIR = tmp_path / "data"


@pytest.fixture
def dataops_page_world(departments: dict[str, Department], make_user: Any, admin_user: User) -> PageWorld:
    def client_for(user: User | None) -> Client:
        client = Client(SERVER_NAME="localhost", enforce_csrf_checks=True)
        if user is not None:
            client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
        return client

    return PageWorld(departments=departments, make_user=make_user, admin=admin_user, client_for=client_for)


# --- targets -------------------------------------------------------------------------------------
def _uploaded_import(world: PageWorld, rows: list[list[str]] | None = None) -> ImportJob:
    return jobs.import_create(
        actor=world.admin,
        kind="customers",
        source=io.BytesIO(csv_bytes(rows or IMPORT_ROWS)),
        file_name="m.csv",
    )


def _ran_import(world: PageWorld, rows: list[list[str]] | None = None, *, dry_run: bool = False) -> ImportJob:
    job = _uploaded_import(world, rows)
    jobs.import_queue(actor=world.admin, job=job, dry_run=dry_run)
    jobs_imports.import_run_task(job.pk, dry_run)
    job.refresh_from_db()
    return job


def _done_import(world: PageWorld) -> ImportJob:
    job = _ran_import(world)
    assert job.status == ImportStatus.DONE, job.message
    return job


class _RewindingFile(io.BytesIO):
    """An upload the test client may read once per case: every read starts again at the start."""

    name = "matrix.csv"

    def read(self, size: int | None = -1) -> bytes:
        self.seek(0)
        return super().read(size)


def _content(response: Any) -> str:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode("utf-8-sig")
    return response.content.decode()


DATAOPS_PAGES = [
    # exports
    Page(
        "export_list",
        "GET",
        "dataops:export_list",
        ALL_EXPORTS,
        requires=("customers.view", "cards.view", "orders.view"),
    ),
    Page(
        "export_create",
        "POST",
        "dataops:export_create",
        ("customers.export",),
        requires=("customers.view",),
        data={"source": "customers", "format": "csv"},
    ),
    # data quality
    Page("quality_report", "GET", "dataops:quality_report", ("data_quality.view",)),
    # duplicates
    Page(
        "dedup_candidates",
        "GET",
        "dataops:dedup_candidates",
        ("duplicates.view",),
        requires=("customers.view",),
    ),
    Page("dedup_scan_list", "GET", "dataops:dedup_scan_list", ("duplicates.view",)),
    Page(
        "dedup_scan_list",
        "POST",
        "dataops:dedup_scan_list",
        ("duplicates.change",),
        requires=("duplicates.view",),
        allowed_status=302,
        effect=lambda _target: DedupScan.objects.filter(status="done").exists(),
    ),
    Page("dedup_scan_detail", "GET", "dataops:dedup_scan_detail", ("duplicates.view",), target=scan),
    Page(
        "dedup_check",
        "POST",
        "dataops:dedup_check",
        ("customers.view",),
        data={"name": "远方客户", "phones-0-number": "13966660000"},
    ),
    # imports: not scoped by department
    Page("import_list", "GET", "dataops:import_list", ("imports.view",)),
    Page(
        "import_list",
        "POST",
        "dataops:import_list",
        ("imports.create",),
        requires=("imports.view",),
        data={"file": _RewindingFile(csv_bytes(IMPORT_ROWS)), "kind": "customers"},
        allowed_status=302,
        effect=lambda _target: ImportJob.objects.filter(file_name="matrix.csv").exists(),
    ),
    Page("import_detail", "GET", "dataops:import_detail", ("imports.view",), target=_uploaded_import),
    Page("import_progress", "GET", "dataops:import_progress", ("imports.view",), target=_uploaded_import),
    Page(
        "import_configure",
        "POST",
        "dataops:import_configure",
        ("imports.change",),
        target=_uploaded_import,
        data={"action": "save", "column_0": "name", "column_1": "phones", "match_mode": "overwrite"},
        allowed_status=302,
        effect=lambda job: job.match_mode == "overwrite" and job.mapping == {"0": "name", "1": "phones"},
    ),
    Page(
        "import_resume",
        "POST",
        "dataops:import_resume",
        ("imports.create",),
        target=_uploaded_import,
        allowed_status=302,
        effect=lambda job: job.status == ImportStatus.DONE and job.rows_created == 2,
    ),
    Page(
        "import_undo",
        "POST",
        "dataops:import_undo",
        ("imports.delete",),
        target=_done_import,
        allowed_status=302,
        effect=lambda job: job.undone_at is not None,
    ),
    # the 360 page's interactions panel
    Page(
        "customer_interactions",
        "GET",
        "engagement:customer_interactions",
        ("interactions.view",),
        requires=("customers.view",),
        target=store_c_customer,
        is_scoped=True,
        url_arg="code",
    ),
    Page(
        "interaction_create",
        "POST",
        "engagement:interaction_create",
        ("interactions.create",),
        requires=("customers.view", "interactions.view"),
        target=store_c_customer,
        is_scoped=True,
        url_arg="code",
        data={"kind": "call", "direction": "outbound", "subject": "回访"},
        effect=lambda customer: Interaction.objects.filter(customer=customer, subject="回访").exists(),
    ),
]


# The scope matrix's counted models but the accounts tables, whose rows the page matrix's own
# callers add after the target is made (and which page_matrix.py checks itself).
CHECKED_MODELS = tuple(label for label in COUNTED_MODELS if not label.startswith("accounts."))


def _rows(target: models.Model | None, *, skip: tuple[str, ...] = ()) -> tuple[Any, ...]:
    """Row counts of the counted models (dataops and engagement too, but ``skip``), and the target row."""
    counts = tuple(
        apps.get_model(label)._base_manager.count() for label in CHECKED_MODELS if label not in skip
    )
    if target is None:
        return counts
    fresh = type(target)._base_manager.filter(pk=target.pk).values().first()
    return (*counts, sorted(fresh.items()) if fresh else None)


def _guarded(page: Page) -> tuple[Page, dict[str, Any]]:
    """``page`` whose target factory also notes the rows just before the request."""
    noted: dict[str, Any] = {}
    make = page.target

    def target(world: PageWorld) -> Any:
        made = make(world) if make is not None else None
        noted["target"], noted["rows"] = made, _rows(made)
        return made

    return dataclasses.replace(page, target=target), noted


@pytest.mark.parametrize(("page", "kind"), page_cases(DATAOPS_PAGES))
def test_dataops_page_permission_and_scope(page: Page, kind: str, dataops_page_world: PageWorld) -> None:
    guarded, noted = _guarded(page)
    run_page_case(guarded, kind, dataops_page_world)
    if kind != ALLOWED:
        assert _rows(noted["target"]) == noted["rows"]


# --- an export belongs to the user who asked for it ------------------------------------------------
OWNER_PAGES = [
    Page("export_link", "GET", "dataops:export_link", (), url_arg="plain_token"),
    Page(
        "export_file",
        "GET",
        "dataops:export_file",
        ("customers.export",),
        requires=("customers.view",),
        url_arg="plain_token",
    ),
    Page(
        "export_renew",
        "POST",
        "dataops:export_renew",
        (),
        allowed_status=302,
        effect=lambda job: job.token_hash != "",
    ),
]


def _owner_cases() -> list[Any]:
    params = []
    for page in OWNER_PAGES:
        kinds = [ANONYMOUS, *([NO_PERMISSION] if page.permissions else []), OTHER_USER, ALLOWED]
        params += [pytest.param(page, kind, id=f"{page.name}-{page.method.lower()}-{kind}") for kind in kinds]
    return params


@pytest.mark.parametrize(("page", "kind"), _owner_cases())
def test_export_pages_only_serve_their_owner(page: Page, kind: str, dataops_page_world: PageWorld) -> None:
    world = dataops_page_world
    # given the caller, and an export that is theirs (or, in the other-user case, someone else's)
    granted = sorted({*page.permissions, *page.requires})
    if kind == NO_PERMISSION:
        granted = sorted(all_permissions() - set(page.permissions))
    caller = None if kind == ANONYMOUS else world.make_user(permissions=granted, scope="all")
    owner = caller if kind in (NO_PERMISSION, ALLOWED) else UserFactory()
    job = finished_export(owner)
    old_hash = job.token_hash
    url = reverse(page.url_name, args=[getattr(job, page.url_arg)])
    before = _rows(job)
    # when
    client = world.client_for(caller)
    response = client.get(url) if page.method == "GET" else post(client, url)
    # then
    if kind == ALLOWED:
        assert response.status_code == page.allowed_status, _content(response)[-2000:]
        if page.name == "export_renew":
            assert ExportJob.objects.get(pk=job.pk).token_hash not in ("", old_hash)
        return
    assert response.status_code == {ANONYMOUS: 302, NO_PERMISSION: 403, OTHER_USER: 404}[kind]
    if kind == ANONYMOUS:
        assert response["Location"] == f"{reverse('web:login')}?next={url}"
    assert _rows(job) == before


# --- lists and searches leave out what the viewer's scope does not reach ---------------------------
@dataclasses.dataclass(frozen=True)
class Listing:
    name: str
    method: str
    url_name: str
    permissions: tuple[str, ...]
    target: Callable[[PageWorld], Any]
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    # What names the target on the page (its customer code, unless the page shows names only).
    marker: Callable[[Any], str] = lambda target: target.code


LISTING_PAGES = [
    Listing(
        "export_create",
        "POST",
        "dataops:export_create",
        ("customers.view", "customers.export"),
        store_c_customer,
        data={"source": "customers", "format": "csv"},
    ),
    Listing(
        "export_create_cards",
        "POST",
        "dataops:export_create",
        ("cards.view", "cards.export"),
        store_c_card,
        data={"source": "cards", "format": "csv"},
        marker=lambda card: card.number,
    ),
    Listing(
        "export_create_orders",
        "POST",
        "dataops:export_create",
        ("orders.view", "orders.export"),
        store_c_order,
        data={"source": "orders", "format": "csv"},
        marker=lambda order: order.number,
    ),
    Listing(
        "quality_report", "GET", "dataops:quality_report", ("data_quality.view",), stale_store_c_customer
    ),
    Listing(
        "dedup_candidates",
        "GET",
        "dataops:dedup_candidates",
        ("duplicates.view", "customers.view"),
        store_c_pair,
        marker=lambda pair: pair.customer_a.code,
    ),
    Listing(
        "dedup_check",
        "POST",
        "dataops:dedup_check",
        ("customers.view",),
        store_c_customer,
        data={"name": "远方客户", "phones-0-number": "13966660000"},
    ),
]


@pytest.mark.parametrize(
    ("listing", "kind"),
    [
        pytest.param(listing, kind, id=f"{listing.name}-{listing.method.lower()}-{kind}")
        for listing in LISTING_PAGES
        for kind in (OUT_OF_SCOPE, ALLOWED)
    ],
)
def test_listing_pages_leave_out_records_outside_the_scope(
    listing: Listing, kind: str, dataops_page_world: PageWorld
) -> None:
    world = dataops_page_world
    # given a record in store C, and a viewer in store A with department scope (or scope "all")
    target = listing.target(world)
    scope = "department" if kind == OUT_OF_SCOPE else "all"
    viewer = world.make_user(
        permissions=list(listing.permissions), scope=scope, department=world.departments["store_a"]
    )
    client = world.client_for(viewer)
    url = reverse(listing.url_name)
    # An export is audited even when the viewer's scope leaves every row out.
    skip = ("core.AuditEvent",) if listing.url_name == "dataops:export_create" else ()
    before = _rows(target, skip=skip)
    # when
    response = client.get(url) if listing.method == "GET" else post(client, url, listing.data)
    # then
    assert response.status_code == 200
    shown = listing.marker(target) in _content(response)
    assert shown is (kind == ALLOWED)
    if kind == OUT_OF_SCOPE:
        assert _rows(target, skip=skip) == before


# --- the import error file (two URL arguments) ------------------------------------------------------
@pytest.mark.parametrize("kind", [ANONYMOUS, NO_PERMISSION, ALLOWED])
@pytest.mark.parametrize("file_format", ["csv", "xlsx"])
def test_import_error_file_page(kind: str, file_format: str, dataops_page_world: PageWorld) -> None:
    world = dataops_page_world
    job = _ran_import(world, [*IMPORT_ROWS, BAD_ROW], dry_run=True)
    assert job.status == ImportStatus.CHECKED, job.message
    granted = sorted(all_permissions() - {"imports.view"}) if kind == NO_PERMISSION else ["imports.view"]
    caller = None if kind == ANONYMOUS else world.make_user(permissions=granted, scope="all")
    url = reverse("dataops:import_errors", args=[job.pk, file_format])
    before = _rows(job)

    response = world.client_for(caller).get(url)

    if kind == ALLOWED:
        assert response.status_code == 200
        assert response["Content-Disposition"].startswith("attachment")
        if file_format == "csv":
            assert "13811110003" in _content(response)
        return
    assert response.status_code == {ANONYMOUS: 302, NO_PERMISSION: 403}[kind]
    assert _rows(job) == before


# --- completeness --------------------------------------------------------------------------------
def test_every_dataops_and_interaction_page_is_in_the_matrix() -> None:
    from kehu.dataops.views import dedup, exports, imports, quality
    from kehu.engagement import urls as engagement_urls

    published = {
        f"dataops:{pattern.name}"
        for module in (dedup, exports, imports, quality)
        for pattern in module.urlpatterns
    } | {f"engagement:{pattern.name}" for pattern in engagement_urls.urlpatterns}
    covered = {page.url_name for page in [*DATAOPS_PAGES, *OWNER_PAGES]} | {"dataops:import_errors"}
    assert published == covered
