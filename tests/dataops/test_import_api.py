"""The import API and pages: upload, map, dry run, run (Huey runs immediately under pytest),
error file, undo, templates, permissions."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import translation

from kehu.accounts.models import User
from kehu.customers.models import Customer
from kehu.customers.services import customer_update
from kehu.dataops.models import ImportJob, ImportStatus, MappingTemplate
from tests.conftest import ApiClient
from tests.dataops import files

pytestmark = pytest.mark.django_db

ALL = ["imports.view", "imports.create", "imports.change", "imports.delete", "customers.view"]


@pytest.fixture(autouse=True)
def english(settings: Any, tmp_path: Path) -> Iterator[None]:
    settings.DATA_DIR = tmp_path / "data"
    with translation.override("en"):
        yield


@pytest.fixture
def importer(make_user: Callable[..., User]) -> User:
    return make_user(permissions=ALL)


def english_api(api: ApiClient) -> ApiClient:
    api.headers["HTTP_ACCEPT_LANGUAGE"] = "en"
    return api


def upload(api: ApiClient, path: Path, kind: str = "customers") -> Any:
    with path.open("rb") as f:
        return api.client.post("/api/v1/imports", {"file": f, "kind": kind}, **api.headers)


def test_upload_map_dry_run_run_and_undo_through_the_api(
    tmp_path: Path, importer: User, api_as: Callable[[User | None], ApiClient]
) -> None:
    api = english_api(api_as(importer))
    rows = [*files.ROWS, ["", "13500135000", "", "", "南京", "1"]]
    created = upload(api, files.gbk_csv(tmp_path, rows))
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["encoding"], body["headers"][:2], body["mapping"]["0"]) == (
        "gb18030",
        ["姓名", "手机"],
        "name",
    )
    assert body["sample"][0][0] == "张三"
    assert {"key": "phones", "label": "Phone", "required": False} in body["fields"]
    job_id = body["id"]

    patched = api.patch(f"imports/{job_id}", {"match_mode": "fill_empty", "save_template_as": "gbk export"})
    assert patched.status_code == 200
    assert patched.json()["match_mode"] == "fill_empty"
    assert MappingTemplate.objects.filter(name="gbk export").exists()

    checked = api.post(f"imports/{job_id}/dry-run")
    assert checked.status_code == 202
    detail = api.get(f"imports/{job_id}").json()
    assert (detail["status"], detail["rows_created"], detail["rows_failed"]) == ("checked", 4, 1)
    assert detail["first_errors"] == [{"row": 6, "column": "姓名", "reason": "Enter the customer's name."}]
    assert Customer.objects.count() == 0

    errors = api.get(f"imports/{job_id}/errors")
    assert errors.status_code == 200
    assert errors["Content-Disposition"] == f'attachment; filename="import-{job_id}-errors.csv"'
    table = list(csv.reader(io.StringIO(b"".join(errors.streaming_content).decode("utf-8-sig"))))
    assert table[1] == ["6", "", "13500135000", "", "", "南京", "1", "姓名", "Enter the customer's name."]

    ran = api.post(f"imports/{job_id}/run")
    assert ran.status_code == 202
    detail = api.get(f"imports/{job_id}").json()
    assert (detail["status"], detail["rows_processed"], detail["rows_created"], detail["percent"]) == (
        "done",
        5,
        4,
        100,
    )
    assert Customer.objects.count() == 4
    assert api.post(f"imports/{job_id}/run").status_code == 409

    undone = api.post(f"imports/{job_id}/undo")
    assert undone.status_code == 200
    assert undone.json() == {"id": job_id, "status": "undone", "records": 4}
    assert Customer.all_objects.count() == 0
    assert [item["id"] for item in api.get("imports").json()["items"]] == [job_id]


def test_refused_files_and_undo_conflicts_answer_with_codes(
    tmp_path: Path, importer: User, api_as: Callable[[User | None], ApiClient]
) -> None:
    api = english_api(api_as(importer))
    refused = upload(api, files.xml_bomb_xlsx(tmp_path))
    assert refused.status_code == 422
    assert refused.json()["code"] == "file_refused"

    job_id = upload(api, files.utf8_csv(tmp_path)).json()["id"]
    api.post(f"imports/{job_id}/run")
    zhang = Customer.objects.get(name="张三")
    customer_update(actor=None, customer=zhang, data={"notes": "edited"}, expected_version=1)
    conflict = api.post(f"imports/{job_id}/undo")
    assert conflict.status_code == 409
    assert conflict.json()["code"] == "import_undo_refused"
    assert zhang.code in conflict.json()["message"]
    assert Customer.objects.count() == 4

    bad_mapping = api.patch(f"imports/{job_id}", {"mapping": {"1": "phones"}})
    assert bad_mapping.status_code == 409  # the import has run: its mapping is fixed


@pytest.mark.parametrize(
    ("permissions", "method", "path", "expected"),
    [
        ([], "get", "imports", 403),
        (["imports.view"], "post", "imports/{id}/run", 403),
        (["imports.view"], "patch", "imports/{id}", 403),
        (["imports.view", "imports.create"], "post", "imports/{id}/undo", 403),
        (["imports.view"], "get", "imports/{id}", 200),
    ],
)
def test_permissions(
    tmp_path: Path,
    importer: User,
    make_user: Callable[..., User],
    api_as: Callable[[User | None], ApiClient],
    permissions: list[str],
    method: str,
    path: str,
    expected: int,
) -> None:
    job_id = upload(api_as(importer), files.utf8_csv(tmp_path)).json()["id"]
    user = make_user(permissions=permissions or ["customers.view"])
    api = api_as(user)
    body = {"match_mode": "create"} if method == "patch" else None
    response = (
        getattr(api, method)(path.format(id=job_id), body)
        if body
        else getattr(api, method)(path.format(id=job_id))
    )
    assert response.status_code == expected
    job = ImportJob.objects.get(pk=job_id)
    assert (job.status, job.match_mode) == (ImportStatus.UPLOADED, "skip")
    assert api_as(None).get("imports").status_code == 401


def test_pages_upload_map_run_progress_and_undo(
    tmp_path: Path, importer: User, web_client_as: Callable[[User], Client]
) -> None:
    client = web_client_as(importer)
    client.handler.enforce_csrf_checks = False
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    assert client.get(reverse("dataops:import_list")).status_code == 200
    with files.bom_csv(tmp_path).open("rb") as f:
        uploaded = client.post(reverse("dataops:import_list"), {"file": f, "kind": "customers"})
    job = ImportJob.objects.get()
    assert uploaded.status_code == 302
    assert uploaded["Location"] == reverse("dataops:import_detail", args=[job.pk])
    page = client.get(uploaded["Location"]).content.decode()
    assert 'name="column_0"' in page
    assert "张三" in page

    mapping = {f"column_{index}": key for index, key in job.mapping.items()}
    client.post(
        reverse("dataops:import_configure", args=[job.pk]),
        {**mapping, "match_mode": "skip", "action": "dry_run"},
    )
    job.refresh_from_db()
    assert (job.status, job.rows_created) == (ImportStatus.CHECKED, 4)
    client.post(
        reverse("dataops:import_configure", args=[job.pk]), {**mapping, "match_mode": "skip", "action": "run"}
    )
    job.refresh_from_db()
    assert (job.status, Customer.objects.count()) == (ImportStatus.DONE, 4)

    progress = client.get(reverse("dataops:import_progress", args=[job.pk]), HTTP_HX_REQUEST="true")
    assert progress["HX-Refresh"] == "true"
    assert "100%" in progress.content.decode()
    assert "Undo import" in client.get(reverse("dataops:import_detail", args=[job.pk])).content.decode()
    client.post(reverse("dataops:import_undo", args=[job.pk]))
    job.refresh_from_db()
    assert (job.status, Customer.all_objects.count()) == (ImportStatus.UNDONE, 0)


def test_pages_are_refused_without_permission(
    tmp_path: Path, make_user: Callable[..., User], web_client_as: Callable[[User], Client]
) -> None:
    client = web_client_as(make_user(permissions=["customers.view"]))
    assert client.get(reverse("dataops:import_list")).status_code == 403
