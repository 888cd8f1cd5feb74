"""What the data-operations API matrix (test_api_matrix.py) acts on and checks: the targets each
endpoint is called about, the bodies it is sent, and what an allowed call must leave behind.
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
from tests.scope_matrix import OTHER_SCOPE, World

IMPORT_HEADERS = ["姓名", "手机", "城市"]
IMPORT_ROWS = [["矩阵甲", "13811110001", "成都"], ["矩阵乙", "13811110002", "成都"]]
BAD_ROW = ["", "13811110003", "成都"]  # no name: refused with a reason


class Upload(dict[str, Any]):
    """A multipart body: form fields, and files as ``(file name, bytes)``."""


class UploadingClient:
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


# --- targets -------------------------------------------------------------------------------------
def store_c_customer(world: World, name: str = "远方客户", phone: str = "13966660000") -> Customer:
    return customer_create(
        actor=None,
        data={"name": name, "phones": [phone], "department_id": world.departments["store_c"].pk},
        allow_duplicate=True,
    )


def store_c_card(world: World) -> Card:
    if not CardType.objects.filter(code="sv").exists():
        programme()
    customer = store_c_customer(world, "持卡客户", "13966661111")
    return card_issue(
        actor=None, card_type=CardType.objects.get(code="sv"), customer=customer, payment_method="cash"
    ).card


def store_c_order(world: World) -> Order:
    return order_create(
        actor=None,
        customer=store_c_customer(world, "下单客户", "13966662222"),
        lines=[LineInput(name="剪发", unit_price_fen=8_800)],
        payments=[PaymentInput(method="cash", amount_fen=8_800)],
    ).order


def stale_store_c_customer(world: World) -> Customer:
    customer = store_c_customer(world)
    Customer.objects.filter(pk=customer.pk).update(updated_at=timezone.now() - dt.timedelta(days=800))
    customer.refresh_from_db()
    return customer


def store_c_pair(world: World) -> DuplicatePair:
    first = store_c_customer(world, "远方客户", "13966660001")
    second = store_c_customer(world, "远方客户", "13966660002")
    return DuplicatePair.objects.create(customer_a=first, customer_b=second, score=0.9, cluster=first.pk)


def scan(world: World) -> DedupScan:
    return DedupScan.objects.create(threshold=0.6, status="done", finished_at=timezone.now())


def job_owner(world: World) -> User:
    """The caller, except in the other-user case (and for an anonymous caller): someone else."""
    if world.caller is not None and not world.extra["case"].startswith(OTHER_SCOPE):
        return world.caller
    return UserFactory(department=world.departments["store_c"])


def export_job(world: World) -> ExportJob:
    return finished_export(job_owner(world))


def finished_export(owner: User) -> ExportJob:
    """A finished background export of ``owner``'s with its file; ``plain_token`` is the link's token."""
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
        created_by=owner,
        finished_at=now,
    )
    job.plain_token = token  # type: ignore[attr-defined]
    return job


def csv_bytes(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows([IMPORT_HEADERS, *rows])
    return out.getvalue().encode("utf-8")


def uploaded_import(world: World, rows: list[list[str]] | None = None) -> ImportJob:
    admin = world.extra["admin"]
    return jobs.import_create(
        actor=admin,
        kind="customers",
        source=io.BytesIO(csv_bytes(rows or IMPORT_ROWS)),
        file_name="matrix.csv",
    )


def checked_import(world: World) -> ImportJob:
    """A dry-run with one refused row, so there is an error file."""
    job = uploaded_import(world, [*IMPORT_ROWS, BAD_ROW])
    jobs.import_queue(actor=world.extra["admin"], job=job, dry_run=True)
    jobs_imports.import_run_task(job.pk, True)
    job.refresh_from_db()
    assert job.status == ImportStatus.CHECKED, job.message
    return job


def done_import(world: World) -> ImportJob:
    job = uploaded_import(world)
    jobs.import_queue(actor=world.extra["admin"], job=job, dry_run=False)
    jobs_imports.import_run_task(job.pk, False)
    job.refresh_from_db()
    assert job.status == ImportStatus.DONE, job.message
    return job


def template(world: World) -> MappingTemplate:
    return MappingTemplate.objects.create(kind="customers", name="矩阵模板", mapping={"0": "name"})


# --- what an allowed call leaves behind -------------------------------------------------------------
def content(response: Any) -> str:
    return b"".join(response.streaming_content).decode("utf-8-sig")


def file_has(key: str, *, shown: bool = True) -> Callable[[World, Any], None]:
    """The exported file holds the target's ``key`` (or, ``shown=False``, does not)."""

    def check(world: World, response: Any) -> None:
        assert (getattr(world.target, key) in content(response)) is shown

    return check


def background_file_has(key: str, *, shown: bool = True) -> Callable[[World, Any], None]:
    """The background job is done, and the file behind its one-time link holds the target's ``key``."""

    def check(world: World, response: Any) -> None:
        body = response.json()
        assert body["status"] == ExportStatus.DONE, body
        client = world.extra.get("client") or world.api_as(world.caller)
        download = client.request("GET", body["download_url"])
        assert download.status_code == 200, download.content
        assert (getattr(world.target, key) in content(download)) is shown

    return check


def export_body(source: str, *, background: bool = False) -> Callable[[World], dict[str, Any]]:
    return lambda world: {"source": source, "format": "csv", "background": background}


def listed(world: World, response: Any) -> None:
    assert world.target.pk in [item["id"] for item in response.json()]  # type: ignore[union-attr]


def not_listed(world: World, response: Any) -> None:
    assert world.target.pk not in [item["id"] for item in response.json()]  # type: ignore[union-attr]


def link_renewed(world: World, response: Any) -> None:
    job = ExportJob.objects.get(pk=world.target.pk)  # type: ignore[union-attr]
    assert job.token_hash == token_hash(response.json()["token"]) != token_hash(world.target.plain_token)  # type: ignore[union-attr]


def quality_codes(body: dict[str, Any]) -> set[str]:
    codes = set(body["stale"]["examples"])
    codes |= {customer["code"] for customer in body["high_value_stale"]["customers"]}
    codes |= {
        code for field in body["fields"] for problem in field["problems"] for code in problem["examples"]
    }
    return codes


def quality_counts_target(world: World, response: Any) -> None:
    body = response.json()
    assert body["total"] == 1
    assert world.target.code in body["stale"]["examples"]  # type: ignore[union-attr]


def quality_leaves_target_out(world: World, response: Any) -> None:
    body = response.json()
    assert (body["total"], body["stale"]["count"]) == (0, 0)
    assert world.target.code not in quality_codes(body)  # type: ignore[union-attr]


def scan_ran(world: World, response: Any) -> None:
    assert DedupScan.objects.get(pk=response.json()["id"]).status == "done"


def import_uploaded(world: World, response: Any) -> None:
    assert ImportJob.objects.get(pk=response.json()["id"]).file_name == "matrix.csv"


def import_configured(world: World, response: Any) -> None:
    assert ImportJob.objects.get(pk=world.target.pk).match_mode == "overwrite"  # type: ignore[union-attr]


def import_checked(world: World, response: Any) -> None:
    assert ImportJob.objects.get(pk=world.target.pk).status == ImportStatus.CHECKED  # type: ignore[union-attr]
    assert not Customer.objects.filter(name="矩阵甲").exists()


def import_ran(world: World, response: Any) -> None:
    assert ImportJob.objects.get(pk=world.target.pk).status == ImportStatus.DONE  # type: ignore[union-attr]
    assert Customer.objects.filter(name__in=["矩阵甲", "矩阵乙"]).count() == 2


def import_undone(world: World, response: Any) -> None:
    assert ImportJob.objects.get(pk=world.target.pk).undone_at is not None  # type: ignore[union-attr]
    assert not Customer.objects.filter(name__in=["矩阵甲", "矩阵乙"]).exists()


def error_file(world: World, response: Any) -> None:
    assert "13811110003" in content(response)


def check_body(world: World) -> dict[str, Any]:
    return {"name": "远方客户", "phones": ["139-6666-0000"]}
