"""Kehu's own URLs plus the floor views that benchmarks compare against."""

import json
from typing import Any

from django.db import connection
from django.http import HttpRequest, HttpResponseBadRequest, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

# Built once: the floor should cost only the request cycle, not building its body.
_CONSTANT_BODY = {"status": "ok"}

SEARCH_LIMIT = 20
PAGE_SIZE = 50


def constant(request: HttpRequest) -> JsonResponse:
    """The floor: a bare Django view returning a constant, behind the full middleware stack."""
    return JsonResponse(_CONSTANT_BODY)


# --- customer floors: the index lookup each endpoint needs, as bare SQL on the same connection ---


def _rows(sql: str, params: list[Any]) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return JsonResponse({"items": json.loads(json.dumps(rows, default=str))})


def _pinyin_key_sql(key: str) -> tuple[str, list[Any]]:
    """One whole pinyin key (full pinyin or initials) through the search index of migration 0002."""
    if connection.vendor == "postgresql":
        return (
            "SELECT c.id, c.code, c.name, c.name_pinyin, c.gender, c.created_at FROM customers_customer c WHERE (' ' || c.search_pinyin || ' ') LIKE %s "
            "AND c.deleted_at IS NULL ORDER BY c.id DESC LIMIT %s",
            [f"% {key} %", SEARCH_LIMIT],
        )
    return (
        "SELECT c.id, c.code, c.name, c.name_pinyin, c.gender, c.created_at FROM customers_customer_search s JOIN customers_customer c ON c.id = s.rowid "
        "WHERE customers_customer_search MATCH %s AND c.deleted_at IS NULL ORDER BY s.rowid DESC LIMIT %s",
        [f'pinyin : " {key} "', SEARCH_LIMIT],
    )


def customer_floor(request: HttpRequest, kind: str) -> JsonResponse | HttpResponseBadRequest:
    """GET floors for the customer scenarios; ``q`` is the query or the code."""
    q = request.GET.get("q", "")
    if kind == "name":
        sql = (
            "SELECT c.id, c.code, c.name, c.name_pinyin, c.gender, c.created_at FROM customers_customer c WHERE c.name = %s AND c.deleted_at IS NULL "
            "ORDER BY c.id DESC LIMIT %s"
        )
        return _rows(sql, [q, SEARCH_LIMIT])
    if kind == "pinyin":
        return _rows(*_pinyin_key_sql(q))
    if kind == "last4":
        sql = (
            "SELECT c.id, c.code, c.name, c.name_pinyin, c.gender, c.created_at FROM customers_customerphone p JOIN customers_customer c ON c.id = p.customer_id "
            "WHERE p.last4 = %s AND c.deleted_at IS NULL ORDER BY p.customer_id DESC LIMIT %s"
        )
        return _rows(sql, [q, SEARCH_LIMIT])
    if kind == "phone":
        from kehu.core.crypto import blind_index
        from kehu.customers.models import PHONE_INDEX_PURPOSE

        sql = (
            "SELECT c.id, c.code, c.name, c.name_pinyin, c.gender, c.created_at FROM customers_customerphone p JOIN customers_customer c ON c.id = p.customer_id "
            "WHERE p.number_index = %s AND c.deleted_at IS NULL ORDER BY p.customer_id DESC LIMIT %s"
        )
        return _rows(sql, [blind_index(f"+86{q}", purpose=PHONE_INDEX_PURPOSE), SEARCH_LIMIT])
    if kind == "list":
        after = request.GET.get("after")
        where = "c.deleted_at IS NULL" + (" AND c.code < %s" if after else "")
        sql = f"SELECT c.* FROM customers_customer c WHERE {where} ORDER BY c.code DESC LIMIT %s"  # noqa: S608
        return _rows(sql, [*([after] if after else []), PAGE_SIZE])
    if kind == "detail":
        return _rows("SELECT c.* FROM customers_customer c WHERE c.code = %s AND c.deleted_at IS NULL", [q])
    return HttpResponseBadRequest()


@csrf_exempt
def customer_create_floor(request: HttpRequest) -> JsonResponse:
    """The floor of a create: the same customer and phone written by the bulk path, one row.

    It still computes pinyin, encrypts and indexes the phone and reserves a code; what it
    leaves out is what the API adds: parsing, validation, the duplicate check, the audit
    record and the timeline event.
    """
    from kehu.customers.bulk import CustomerBulkWriter, CustomerRow, PhoneRow

    payload = json.loads(request.body)
    number = "+86" + payload["phones"][0]["number"]
    (code,) = CustomerBulkWriter().write_batch(
        [CustomerRow(name=payload["name"], phones=(PhoneRow(number=number, last4=number[-4:]),))]
    )
    return JsonResponse({"code": code}, status=201)


urlpatterns = [
    path("bench/constant", constant, name="bench-constant"),
    path("bench/floor/customers/create", customer_create_floor, name="bench-floor-customer-create"),
    path("bench/floor/customers/<str:kind>", customer_floor, name="bench-floor-customers"),
    path("", include("kehu.urls")),
]
