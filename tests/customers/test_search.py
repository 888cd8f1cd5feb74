"""Customer search: every query shape, ranking, scope, soft deletion and the masking rule.

Runs against the real database of the run (SQLite with its FTS5 tables and triggers, or
PostgreSQL with pg_trgm), so the index structures of migration 0002 are what is tested.
Customers are written as model rows directly, with the derived columns computed the way the
services compute them, so that these tests do not depend on the service layer.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone, translation

from kehu.accounts.models import Department, User
from kehu.core.crypto import blind_index
from kehu.core.emails import normalise_email
from kehu.core.errors import PermissionDeniedError
from kehu.core.idcard import check_character, parse_id_number
from kehu.core.phones import normalise_phone
from kehu.core.pinyin import name_pinyin, search_keys
from kehu.customers.models import (
    EMAIL_INDEX_PURPOSE,
    ID_NUMBER_INDEX_PURPOSE,
    PHONE_INDEX_PURPOSE,
    Customer,
    CustomerEmail,
    CustomerPhone,
    format_code,
)
from kehu.customers.search import SearchHit, customer_search, deferred_search_indexing

pytestmark = pytest.mark.django_db

_codes = itertools.count(1)

VIEW = ["customers.view"]
VIEW_SENSITIVE = ["customers.view", "customers.view_sensitive"]


def an_id_number(region: str = "110101", birthday: str = "19900307", sequence: str = "123") -> str:
    body = f"{region}{birthday}{sequence}"
    return body + check_character(body)


def derived_name_columns(name: str) -> dict[str, str]:
    reading = name_pinyin(name)
    return {
        "name": name,
        "name_pinyin": reading.full,
        "name_initials": reading.initials,
        "search_pinyin": " ".join(sorted(search_keys(name))),
    }


def add_customer(
    name: str,
    *,
    phones: tuple[str, ...] = (),
    emails: tuple[str, ...] = (),
    id_number: str | None = None,
    owner: User | None = None,
    department: Department | None = None,
) -> Customer:
    """A customer row with its derived columns, phones and emails, as the services would write it."""
    parsed_id = parse_id_number(id_number) if id_number else None
    customer = Customer.objects.create(
        code=format_code(next(_codes)),
        owner=owner,
        department=department,
        id_number=parsed_id.number if parsed_id else None,
        id_number_index=blind_index(parsed_id.number, purpose=ID_NUMBER_INDEX_PURPOSE) if parsed_id else "",
        **derived_name_columns(name),
    )
    for position, raw in enumerate(phones):
        phone = normalise_phone(raw)
        CustomerPhone.objects.create(
            customer=customer,
            number=phone.e164,
            number_index=blind_index(phone.e164, purpose=PHONE_INDEX_PURPOSE),
            last4=phone.last4,
            position=position,
        )
    for position, raw in enumerate(emails):
        address = normalise_email(raw).lower()  # the stored form (kehu.customers.validation)
        CustomerEmail.objects.create(
            customer=customer,
            address=address,
            address_index=blind_index(address, purpose=EMAIL_INDEX_PURPOSE),
            position=position,
        )
    return customer


def names(hits: list[SearchHit]) -> list[str]:
    return [hit.customer.name for hit in hits]


@pytest.fixture(autouse=True)
def _keys(keyring_sandbox: Any) -> None:
    """Every test encrypts phones and emails with throwaway keys."""


@pytest.fixture
def clerk(make_user: Callable[..., User]) -> User:
    """Sees every customer, masked."""
    return make_user(permissions=VIEW, scope="all")


@pytest.fixture
def manager(make_user: Callable[..., User]) -> User:
    """Sees every customer in full."""
    return make_user(permissions=VIEW_SENSITIVE, scope="all")


# --- Names ----------------------------------------------------------------------------------


def test_a_two_character_name_is_found_exactly_then_by_prefix_then_inside_longer_names(clerk: User) -> None:
    inside = add_customer("李张三")
    longer = add_customer("张三丰")
    exact = add_customer("张三")
    add_customer("张四")

    hits = customer_search(clerk, "张三")

    assert [hit.customer.pk for hit in hits] == [exact.pk, longer.pk, inside.pk]
    assert {hit.matched for hit in hits} == {"name"}


def test_a_one_character_query_finds_names_starting_with_it_before_names_containing_it(clerk: User) -> None:
    middle = add_customer("王三明")
    end = add_customer("张三")
    start = add_customer("三木")
    add_customer("李四")

    hits = customer_search(clerk, "三")

    assert [hit.customer.pk for hit in hits] == [start.pk, end.pk, middle.pk]


def test_a_one_character_name_is_found_by_itself_first(clerk: User) -> None:
    longer = add_customer("吕布")
    alone = add_customer("吕")

    assert [hit.customer.pk for hit in customer_search(clerk, "吕")] == [alone.pk, longer.pk]


def test_any_substring_of_a_longer_name_is_found(clerk: User) -> None:
    customer = add_customer("欧阳修锋")
    add_customer("欧阳明")

    for query in ("修", "阳修", "阳修锋", "修锋", "欧阳修锋"):
        assert names(customer_search(clerk, query)) == ["欧阳修锋"], query
    assert customer_search(clerk, "锋修") == []
    assert customer_search(clerk, "欧阳修锋")[0].customer.pk == customer.pk


def test_the_middle_character_of_a_three_character_name(clerk: User) -> None:
    add_customer("王小明")
    add_customer("张明")

    assert names(customer_search(clerk, "小")) == ["王小明"]
    assert names(customer_search(clerk, "小明")) == ["王小明"]
    assert sorted(names(customer_search(clerk, "明"))) == ["张明", "王小明"]


def test_spaces_typed_between_chinese_characters_are_ignored(clerk: User) -> None:
    add_customer("张三")

    assert names(customer_search(clerk, " 张 三 ")) == ["张三"]


# --- Pinyin and initials --------------------------------------------------------------------


def test_full_pinyin_initials_and_surname_with_initials_find_the_name(clerk: User) -> None:
    zhang_san = add_customer("张三")
    add_customer("李四")

    for query, matched in (
        ("zhangsan", "pinyin"),
        ("ZhangSan", "pinyin"),
        ("zs", "initials"),
        ("zhangs", "pinyin"),
    ):
        hits = customer_search(clerk, query)
        assert [hit.customer.pk for hit in hits] == [zhang_san.pk], query
        assert hits[0].matched == matched, query


def test_pinyin_prefixes_and_substrings_are_found_after_exact_matches(clerk: User) -> None:
    prefix = add_customer("张三丰")  # zhangsanfeng, zsf
    exact = add_customer("张三")  # zhangsan, zs
    inside = add_customer("欧阳张三")  # ouyangzhangsan

    assert [hit.customer.pk for hit in customer_search(clerk, "zhangsan")] == [exact.pk, prefix.pk, inside.pk]
    assert [hit.customer.pk for hit in customer_search(clerk, "zs")] == [exact.pk, prefix.pk]


def test_one_letter_finds_names_by_their_first_initial(clerk: User) -> None:
    zhang = add_customer("张伟")
    wang = add_customer("王芳")

    assert [hit.customer.pk for hit in customer_search(clerk, "z")] == [zhang.pk]
    assert [hit.customer.pk for hit in customer_search(clerk, "w")] == [wang.pk]


def test_lv_and_lu_both_find_lü(clerk: User) -> None:
    lv_bu = add_customer("吕布")
    lv = add_customer("吕")
    add_customer("卢布")  # lubu: found by "lu" as well, but not by "lv"

    assert [hit.customer.pk for hit in customer_search(clerk, "lv")] == [lv.pk, lv_bu.pk]
    assert lv_bu.pk in {hit.customer.pk for hit in customer_search(clerk, "lu")}
    assert lv.pk in {hit.customer.pk for hit in customer_search(clerk, "lu")}
    assert [hit.customer.pk for hit in customer_search(clerk, "lvbu")] == [lv_bu.pk]
    assert {hit.customer.name for hit in customer_search(clerk, "lubu")} == {"吕布", "卢布"}


def test_a_surname_read_as_a_surname_is_found_by_that_reading(clerk: User) -> None:
    customer = add_customer("单田芳")

    assert [hit.customer.pk for hit in customer_search(clerk, "shantianfang")] == [customer.pk]
    assert customer_search(clerk, "dantianfang") == []


# --- Codes, phones, emails, ID numbers ------------------------------------------------------


def test_the_customer_code_is_found_in_full_or_short_form(clerk: User) -> None:
    customer = add_customer("张三")
    add_customer("李四")
    number = int(customer.code[1:])

    for query in (customer.code, customer.code.lower(), f"c{number}"):
        hits = customer_search(clerk, query)
        assert [(hit.customer.pk, hit.matched) for hit in hits] == [(customer.pk, "code")], query


@pytest.mark.parametrize("query", ["+86 138-0013-8000", "13800138000", "138 0013 8000", "0086 138 0013 8000"])
def test_a_full_phone_in_any_common_format_is_found(manager: User, query: str) -> None:
    customer = add_customer("张三", phones=("+8613800138000",))
    add_customer("李四", phones=("13800138001",))

    hits = customer_search(manager, query)

    assert [(hit.customer.pk, hit.matched) for hit in hits] == [(customer.pk, "phone")]


def test_the_last_four_digits_find_every_phone_ending_so(clerk: User) -> None:
    first = add_customer("张三", phones=("13800138000",))
    second = add_customer("李四", phones=("13912348000", "13912340000"))
    add_customer("王五", phones=("13800138001",))

    hits = customer_search(clerk, "8000")

    assert [(hit.customer.pk, hit.matched) for hit in hits] == [(second.pk, "last4"), (first.pk, "last4")]
    # Callers show masked phones, so they come with the hit.
    assert {phone.last4 for phone in hits[0].customer.phones.all()} == {"8000", "0000"}


def test_a_customer_with_two_phones_ending_alike_is_found_once(clerk: User) -> None:
    customer = add_customer("张三", phones=("13800138000", "13900138000"))

    assert [hit.customer.pk for hit in customer_search(clerk, "8000")] == [customer.pk]


def test_email_and_id_number_are_found_by_those_who_may_see_them(manager: User) -> None:
    id_number = an_id_number()
    customer = add_customer("张三", emails=("Zhang.San@Example.com",), id_number=id_number)
    add_customer("李四", emails=("li.si@example.com",), id_number=an_id_number(sequence="125"))

    by_email = customer_search(manager, "Zhang.San@example.com")
    by_id = customer_search(manager, id_number.lower())

    assert [(hit.customer.pk, hit.matched) for hit in by_email] == [(customer.pk, "email")]
    assert [(hit.customer.pk, hit.matched) for hit in by_id] == [(customer.pk, "id_number")]
    assert customer_search(manager, "nobody@example.com") == []


# --- The masking rule -----------------------------------------------------------------------


def test_without_view_sensitive_a_full_phone_finds_only_numbers_masked_alike(
    clerk: User, manager: User
) -> None:
    exact = add_customer("张三", phones=("13800138000",))
    masked_alike = add_customer("李四", phones=("13899998000",))  # also 138****8000
    add_customer("王五", phones=("13900138000",))  # 139****8000: the mask differs

    masked = customer_search(clerk, "138 0013 8000")
    full = customer_search(manager, "138 0013 8000")

    assert [(hit.customer.pk, hit.matched) for hit in masked] == [
        (masked_alike.pk, "phone"),
        (exact.pk, "phone"),
    ]
    assert [hit.customer.pk for hit in full] == [exact.pk]


def test_without_view_sensitive_searching_by_email_or_id_number_is_refused(clerk: User) -> None:
    id_number = an_id_number()
    add_customer("张三", emails=("zhang.san@example.com",), id_number=id_number)

    with translation.override("en"):
        with pytest.raises(PermissionDeniedError) as refused_email:
            customer_search(clerk, "zhang.san@example.com")
        with pytest.raises(PermissionDeniedError) as refused_id:
            customer_search(clerk, id_number)

    assert "permission to view sensitive data" in refused_email.value.message
    assert refused_id.value.code == "permission_denied"


def test_without_view_permission_nothing_is_found(make_user: Callable[..., User]) -> None:
    add_customer("张三", phones=("13800138000",))
    outsider = make_user(permissions=["users.view"], scope="all")

    assert customer_search(outsider, "张三") == []
    assert customer_search(outsider, "8000") == []


# --- Scope and deletion ---------------------------------------------------------------------


def test_a_user_with_own_scope_finds_only_own_customers(make_user: Callable[..., User]) -> None:
    me = make_user(permissions=VIEW, scope="own")
    colleague = make_user(permissions=VIEW, scope="own")
    mine = add_customer("张三", phones=("13800138000",), owner=me)
    add_customer("张三", phones=("13900138000",), owner=colleague)

    for query in ("张三", "zhangsan", "zs", "8000", "13800138000", "13900138000", "张"):
        expected = [] if query == "13900138000" else [mine.pk]
        assert [hit.customer.pk for hit in customer_search(me, query)] == expected, query


def test_department_scope_reaches_the_department_but_not_its_neighbours(
    make_user: Callable[..., User], departments: dict[str, Department]
) -> None:
    clerk_a = make_user(permissions=VIEW, scope="department", department=departments["store_a"])
    regional = make_user(permissions=VIEW, scope="subtree", department=departments["east"])
    in_a = add_customer("张三", department=departments["store_a"])
    in_b = add_customer("张三", department=departments["store_b"])
    in_c = add_customer("张三", department=departments["store_c"])

    assert [hit.customer.pk for hit in customer_search(clerk_a, "张三")] == [in_a.pk]
    assert [hit.customer.pk for hit in customer_search(regional, "zs")] == [in_b.pk, in_a.pk]
    assert in_c.pk not in {hit.customer.pk for hit in customer_search(regional, "张")}


def test_soft_deleted_customers_never_appear(manager: User) -> None:
    gone = add_customer("张三", phones=("13800138000",), emails=("gone@example.com",))
    gone.deleted_at = timezone.now()
    gone.save(update_fields=["deleted_at"])

    for query in ("张三", "张", "zhangsan", "zs", "z", "8000", "13800138000", "gone@example.com", gone.code):
        assert customer_search(manager, query) == [], query


# --- Ranking and limits ---------------------------------------------------------------------


def test_within_a_tier_the_newest_customer_comes_first_and_the_limit_holds(clerk: User) -> None:
    created = [add_customer("张伟") for _ in range(5)]

    hits = customer_search(clerk, "张伟", limit=3)

    assert [hit.customer.pk for hit in hits] == [customer.pk for customer in reversed(created)][:3]


def test_a_common_character_stops_at_the_limit(clerk: User) -> None:
    for given in "一二三四五六七八九十":
        add_customer(f"张{given}")

    assert len(customer_search(clerk, "张", limit=4)) == 4
    assert len(customer_search(clerk, "zh", limit=4)) == 4


def test_blank_and_unmatched_queries_find_nothing(clerk: User) -> None:
    add_customer("张三", phones=("13800138000",))

    for query in ("", "   ", "赵六", "qian", "1234", "C999999", "12345678901234567"):
        assert customer_search(clerk, query) == [], query


# --- The index follows every write ----------------------------------------------------------


def test_renaming_a_customer_reindexes_the_name_and_pinyin(clerk: User) -> None:
    customer = add_customer("张三")

    for field, value in derived_name_columns("李四").items():
        setattr(customer, field, value)
    customer.save()

    assert customer_search(clerk, "张三") == []
    assert customer_search(clerk, "zhangsan") == []
    assert [hit.customer.pk for hit in customer_search(clerk, "李四")] == [customer.pk]
    assert [hit.customer.pk for hit in customer_search(clerk, "lisi")] == [customer.pk]
    assert [hit.customer.pk for hit in customer_search(clerk, "四")] == [customer.pk]


def test_a_queryset_update_and_a_delete_reach_the_index(clerk: User) -> None:
    customer = add_customer("张三丰")
    Customer.objects.filter(pk=customer.pk).update(**derived_name_columns("王小明"))

    assert customer_search(clerk, "三丰") == []
    assert [hit.customer.pk for hit in customer_search(clerk, "小明")] == [customer.pk]

    Customer.all_objects.filter(pk=customer.pk).delete()
    replacement = add_customer("王大明")
    assert [hit.customer.pk for hit in customer_search(clerk, "明")] == [replacement.pk]


def test_rows_inserted_in_bulk_through_the_cursor_are_searchable(clerk: User) -> None:
    rows = [
        (format_code(next(_codes)), *derived_name_columns(name).values())
        for name in ("赵钱孙", "周吴郑", "冯陈褚")
    ]
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO customers_customer (code, name, name_pinyin, name_initials, search_pinyin, gender,"
            " lunar_birthday_is_leap_month, id_number_index, source, external_id, status, notes,"
            " custom_fields, version, created_at, updated_at)"
            " VALUES (%s, %s, %s, %s, %s, '', FALSE, '', '', '', 'active', '', '{}', 1,"
            " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            rows,
        )

    assert names(customer_search(clerk, "吴")) == ["周吴郑"]
    assert names(customer_search(clerk, "钱孙")) == ["赵钱孙"]
    assert names(customer_search(clerk, "fengchenchu")) == ["冯陈褚"]
    assert names(customer_search(clerk, "zwz")) == ["周吴郑"]


def test_a_bulk_batch_indexed_in_one_statement_is_searchable_and_the_trigger_comes_back(clerk: User) -> None:
    rows = [
        (format_code(next(_codes)), *derived_name_columns(name).values()) for name in ("诸葛亮", "司马懿")
    ]
    with transaction.atomic(), deferred_search_indexing(), connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO customers_customer (code, name, name_pinyin, name_initials, search_pinyin, gender,"
            " lunar_birthday_is_leap_month, id_number_index, source, external_id, status, notes,"
            " custom_fields, version, created_at, updated_at)"
            " VALUES (%s, %s, %s, %s, %s, '', FALSE, '', '', '', 'active', '', '{}', 1,"
            " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            rows,
        )
    added_later = add_customer("诸葛瑾")

    assert names(customer_search(clerk, "亮")) == ["诸葛亮"]
    assert names(customer_search(clerk, "simayi")) == ["司马懿"]
    assert [hit.customer.pk for hit in customer_search(clerk, "瑾")] == [added_later.pk]
    assert names(customer_search(clerk, "zhugel")) == ["诸葛亮"]
