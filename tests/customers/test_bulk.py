"""The bulk write path: customers written through the cursor read back exactly like ORM writes."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import IntegrityError
from django.utils import timezone

from kehu.core.crypto import blind_index
from kehu.core.pinyin import name_pinyin, search_keys
from kehu.core.sequences import reserve_numbers
from kehu.customers.bulk import AddressRow, CustomerRow, EmailRow, PhoneRow, customers_bulk_insert
from kehu.customers.models import (
    CODE_SEQUENCE,
    EMAIL_INDEX_PURPOSE,
    ID_NUMBER_INDEX_PURPOSE,
    PHONE_INDEX_PURPOSE,
    Customer,
    CustomerEmail,
    CustomerEvent,
    CustomerPhone,
    CustomerTag,
    Tag,
    format_code,
)

pytestmark = pytest.mark.django_db

CREATED = dt.datetime(2025, 3, 4, 5, 6, 7, 890123, tzinfo=dt.UTC)


def _rows() -> list[CustomerRow]:
    return [
        CustomerRow(
            name="单雄信",
            gender="male",
            birthday=dt.date(1990, 3, 7),
            id_number="11010119900307001X",
            phones=(
                PhoneRow(number="+8613800138000", last4="8000"),
                PhoneRow(
                    number="+861065529988", last4="9988", kind="landline", extension="123", label="office"
                ),
            ),
            emails=(EmailRow(address="shan@example.com"),),
            addresses=(
                AddressRow(
                    province="北京市", city="北京市", district="东城区", street="人民路1号", postcode="100010"
                ),
            ),
            tags=("VIP", "老客户", "VIP"),
            source="walk_in",
            external_id="ext-1",
            notes="first",
            custom_fields={"level": "gold"},
            marketing_consent=True,
            created_at=CREATED,
        ),
        CustomerRow(
            name="欧阳修",
            gender="",
            phones=(PhoneRow(number="+8613900139000", last4="9000"),),
            tags=("VIP",),
            created_at=CREATED + dt.timedelta(days=1),
        ),
        CustomerRow(name="吕布"),
    ]


def test_bulk_inserted_customers_read_back_through_the_orm(make_user, departments):
    owner = make_user(department=departments["store_a"])
    rows = _rows()
    rows[0] = rows[0]._replace(owner_id=owner.pk, department_id=departments["store_a"].pk)
    before = timezone.now()
    # when
    result = customers_bulk_insert(rows, batch_size=2)
    # then
    assert result.count == 3
    customers = list(
        Customer.objects.order_by("code").prefetch_related("phones", "emails", "addresses", "tags")
    )
    assert [c.name for c in customers] == ["单雄信", "欧阳修", "吕布"]
    first, second, third = customers
    assert (result.first_code, result.last_code) == (first.code, third.code)
    assert (first.name_pinyin, first.name_initials) == ("shanxiongxin", "sxx")
    assert (second.name_pinyin, second.name_initials) == ("ouyangxiu", "oyx")
    for customer in customers:
        assert customer.search_pinyin == " ".join(sorted(search_keys(customer.name)))
        assert customer.name_pinyin == name_pinyin(customer.name).full
        assert customer.version == 1
        assert customer.deleted_at is None
    assert third.search_pinyin.split() == ["lb", "lub", "lubu", "lvb", "lvbu"]  # ü typed as v or u
    assert first.birthday == dt.date(1990, 3, 7)
    assert first.birthday_month_day == 307
    assert second.birthday is None
    assert second.birthday_month_day is None
    assert first.id_number == "11010119900307001X"
    assert second.id_number is None
    assert second.id_number_index == ""
    assert (first.gender, first.source, first.external_id, first.notes) == (
        "male",
        "walk_in",
        "ext-1",
        "first",
    )
    assert first.custom_fields == {"level": "gold"}
    assert third.custom_fields == {}
    assert first.marketing_consent is True
    assert first.consent_updated_at == CREATED
    assert second.marketing_consent is None
    assert second.consent_updated_at is None
    assert (first.owner_id, first.department_id) == (owner.pk, departments["store_a"].pk)
    assert first.created_at == CREATED
    assert first.updated_at == CREATED
    assert second.created_at == CREATED + dt.timedelta(days=1)
    assert before <= third.created_at <= timezone.now()
    assert first.status == "active"

    phones = list(first.phones.all())
    assert [(p.number, p.last4, p.kind, p.extension, p.label, p.is_primary, p.position) for p in phones] == [
        ("+8613800138000", "8000", "mobile", "", "", True, 0),
        ("+861065529988", "9988", "landline", "123", "office", False, 1),
    ]
    (email,) = first.emails.all()
    assert (email.address, email.is_primary) == ("shan@example.com", True)
    (address,) = first.addresses.all()
    assert (address.province, address.city, address.district, address.street, address.postcode) == (
        "北京市",
        "北京市",
        "东城区",
        "人民路1号",
        "100010",
    )
    assert address.is_primary
    assert third.phones.count() == 0
    assert third.addresses.count() == 0
    assert sorted(tag.name for tag in first.tags.all()) == ["VIP", "老客户"]
    assert [tag.name for tag in second.tags.all()] == ["VIP"]
    assert Tag.objects.filter(name="VIP").count() == 1
    assert CustomerEvent.objects.count() == 0


def test_blind_indexes_find_bulk_inserted_values():
    customers_bulk_insert(_rows())
    shan = Customer.objects.get(name="单雄信")
    # when / then
    digest = blind_index("+8613800138000", purpose=PHONE_INDEX_PURPOSE)
    assert list(CustomerPhone.objects.filter(number_index=digest).values_list("customer_id", flat=True)) == [
        shan.pk
    ]
    digest = blind_index("shan@example.com", purpose=EMAIL_INDEX_PURPOSE)
    assert list(CustomerEmail.objects.filter(address_index=digest).values_list("customer_id", flat=True)) == [
        shan.pk
    ]
    digest = blind_index("11010119900307001X", purpose=ID_NUMBER_INDEX_PURPOSE)
    assert list(Customer.objects.filter(id_number_index=digest).values_list("pk", flat=True)) == [shan.pk]
    assert list(CustomerPhone.objects.filter(last4="9000").values_list("customer__name", flat=True)) == [
        "欧阳修"
    ]


def test_codes_continue_the_sequence_and_later_writes_do_not_collide():
    (taken,) = reserve_numbers(CODE_SEQUENCE, 1)
    # when
    result = customers_bulk_insert(_rows(), batch_size=2)
    # then
    codes = list(Customer.objects.order_by("code").values_list("code", flat=True))
    assert codes == [format_code(taken + 1), format_code(taken + 2), format_code(taken + 3)]
    assert result.last_code == format_code(taken + 3)
    assert reserve_numbers(CODE_SEQUENCE, 1)[0] == taken + 4
    # An ORM insert after the bulk path gets a fresh primary key.
    highest = max(Customer.objects.values_list("pk", flat=True))
    later = Customer.objects.create(code="C999999", name="后来者")
    assert later.pk > highest
    # And a second bulk insert after it does too.
    again = customers_bulk_insert([CustomerRow(name="再来")])
    assert Customer.objects.get(code=again.first_code).pk > later.pk


def test_ids_of_deleted_customers_are_not_reused():
    customers_bulk_insert([CustomerRow(name="张三"), CustomerRow(name="李四")])
    last = Customer.all_objects.order_by("-pk").first()
    assert last is not None
    last_pk = last.pk
    last.delete()
    # when
    customers_bulk_insert([CustomerRow(name="王五")])
    # then
    assert Customer.objects.get(name="王五").pk > last_pk


def test_a_failing_batch_leaves_nothing_of_itself_behind(admin_user):
    from kehu.customers.search import customer_search

    (taken,) = reserve_numbers(CODE_SEQUENCE, 1)
    rows = [
        CustomerRow(name="张三", phones=(PhoneRow(number="+8613800000001", last4="0001"),), tags=("先来",)),
        CustomerRow(name="李四", tags=("先来",)),
        CustomerRow(name="王五", tags=("后到",), phones=(PhoneRow(number="+8613800000003", last4="0003"),)),
        # The same number twice on one customer breaks the unique constraint midway through the batch.
        CustomerRow(
            name="赵六",
            phones=(
                PhoneRow(number="+8613800000004", last4="0004"),
                PhoneRow(number="+8613800000004", last4="0004"),
            ),
        ),
    ]
    progress: list[int] = []
    # when
    with pytest.raises(IntegrityError):
        customers_bulk_insert(rows, batch_size=2, on_batch=progress.append)
    # then the first batch is committed, the second left no trace
    assert progress == [2]
    assert list(Customer.all_objects.order_by("code").values_list("name", flat=True)) == ["张三", "李四"]
    assert CustomerPhone.objects.count() == 1
    assert CustomerTag.objects.count() == 2
    assert list(Tag.objects.values_list("name", flat=True)) == ["先来"]
    # Its codes were given back.
    assert reserve_numbers(CODE_SEQUENCE, 1)[0] == taken + 3
    # The search index's insert trigger, set aside during the batch, is back: an ORM write is indexed.
    Customer.objects.create(code="C900000", name="欧阳锋", search_pinyin="ouyangfeng oyf ouyangf")
    assert [hit.customer.code for hit in customer_search(admin_user, "阳锋")] == ["C900000"]
    # The writer's tag cache did not keep the rolled-back tag: inserting it again works.
    customers_bulk_insert([CustomerRow(name="王五", tags=("后到",))])
    assert list(Customer.objects.get(name="王五").tags.values_list("name", flat=True)) == ["后到"]


def test_creation_events_when_asked_for(admin_user):
    # when
    result = customers_bulk_insert(
        [CustomerRow(name="张三", created_at=CREATED, created_by_id=admin_user.pk)],
        creation_event_channel="import",
    )
    # then
    customer = Customer.objects.get(code=result.first_code)
    (event,) = CustomerEvent.objects.filter(customer=customer)
    assert (event.kind, event.channel, event.actor_id, event.occurred_at, event.data) == (
        "created",
        "import",
        admin_user.pk,
        CREATED,
        {},
    )
    assert customer.created_by_id == admin_user.pk


def test_nothing_to_insert_is_no_error():
    result = customers_bulk_insert([])
    assert (result.count, result.first_code, result.last_code) == (0, None, None)
    assert Customer.all_objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_bulk_batches_and_orm_writes_running_at_once_do_not_collide():
    import threading

    from django.db import connection, connections

    if connection.vendor == "sqlite" and connection.is_in_memory_db():
        # Shared-cache in-memory databases lock per table and fail at once instead of waiting
        # on the busy timeout; the file database Kehu runs on (KEHU_TEST_SQLITE_FILE=1) waits.
        pytest.skip("needs a file database: run with KEHU_TEST_SQLITE_FILE=1")

    errors: list[BaseException] = []

    def orm_writes() -> None:
        try:
            for number in range(40):
                customer = Customer.objects.create(code=f"X{number:05d}", name="前台录入")
                CustomerPhone.objects.create(
                    customer=customer,
                    number=f"+86139{number:08d}",
                    number_index=blind_index(f"+86139{number:08d}", purpose=PHONE_INDEX_PURPOSE),
                    last4=f"{number:04d}",
                )
        except BaseException as error:  # noqa: BLE001 -- re-raised by the test below
            errors.append(error)
        finally:
            connections.close_all()

    rows = [
        CustomerRow(name="批量导入", phones=(PhoneRow(number=f"+86138{n:08d}", last4=f"{n % 10000:04d}"),))
        for n in range(400)
    ]
    writer = threading.Thread(target=orm_writes)
    writer.start()
    # when
    customers_bulk_insert(rows, batch_size=20)
    writer.join()
    # then
    assert errors == []
    assert Customer.objects.filter(name="批量导入").count() == 400
    assert Customer.objects.filter(name="前台录入").count() == 40
    # Every phone belongs to the customer it was written for.
    for phone in CustomerPhone.objects.select_related("customer"):
        expected = "批量导入" if phone.number.startswith("+86138") else "前台录入"
        assert phone.customer.name == expected


def test_search_finds_bulk_inserted_customers(admin_user):
    from kehu.customers.search import customer_search

    customers_bulk_insert(_rows(), batch_size=2)
    shan = Customer.objects.get(name="单雄信")

    # when / then: the search indexes cover the new rows as they cover ORM writes
    def found(query: str) -> list[str]:
        return [hit.customer.code for hit in customer_search(admin_user, query)]

    assert found("单雄信") == [shan.code]
    assert found("雄信") == [shan.code]
    assert found("shanxiongxin") == [shan.code]
    assert found("sxx") == [shan.code]
    assert found("8000") == [shan.code]
    assert found("138 0013 8000") == [shan.code]
    assert found("吕布") == [Customer.objects.get(name="吕布").code]
