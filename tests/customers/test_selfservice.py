"""Self-service update links: staff create one, the customer corrects their details once."""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

import pytest
from django.core import signing
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation

from kehu.accounts.models import Department, User
from kehu.core.errors import Conflict, NotFound, PermissionDeniedError, ValidationFailed
from kehu.core.models import AuditEvent
from kehu.customers import selfservice
from kehu.customers.models import (
    Customer,
    CustomerChange,
    CustomerEvent,
    EventKind,
    SelfServiceLink,
    SelfServiceSubmission,
    SubmissionStatus,
)
from kehu.customers.services import customer_create
from tests.web.conftest import post

pytestmark = pytest.mark.django_db


@pytest.fixture
def visitor() -> Client:
    """A phone's browser: no session, and an address of its own.

    The rate-limit counters live in the shared cache, which outlives a test run: a fresh random
    address keeps earlier tests and runs from counting against this one.
    """
    address = ".".join(str(secrets.randbelow(250) + 1) for _ in range(3))
    return Client(SERVER_NAME="localhost", REMOTE_ADDR=f"10.{address}")


@pytest.fixture
def clerk(make_user: Any, departments: dict[str, Department]) -> User:
    return make_user(
        permissions=["customers.view", "customers.change"],
        scope="department",
        department=departments["store_a"],
        username="clerk",
    )


@pytest.fixture
def customer(departments: dict[str, Department]) -> Customer:
    return customer_create(
        actor=None,
        data={
            "name": "张三",
            "department_id": departments["store_a"].pk,
            "phones": [{"number": "13800138000", "label": "本人"}],
            "emails": ["zhang.san@example.com"],
            "addresses": [
                {
                    "province": "上海市",
                    "city": "上海市",
                    "district": "徐汇区",
                    "street": "漕溪北路 88 号",
                    "postcode": "200030",
                }
            ],
            "birthday": "1990-05-01",
        },
    )


@pytest.fixture
def other_customer(departments: dict[str, Department]) -> Customer:
    return customer_create(
        actor=None,
        data={
            "name": "李四",
            "department_id": departments["store_c"].pk,
            "phones": ["13912345678"],
            "emails": ["li.si@example.org"],
            "addresses": [{"province": "四川省", "city": "成都市", "street": "春熙路 9 号"}],
        },
    )


def _url(token: str) -> str:
    return reverse("selfservice:public", args=[token])


def _form(**changes: str) -> dict[str, str]:
    """What the customer's browser posts: the record as shown, with ``changes`` typed over it."""
    data = {
        "phone_0": "138 0013 8000",
        "phone_1": "",
        "email_0": "zhang.san@example.com",
        "email_1": "",
        "address_0_province": "上海市",
        "address_0_city": "上海市",
        "address_0_district": "徐汇区",
        "address_0_street": "漕溪北路 88 号",
        "address_0_postcode": "200030",
        "address_1_province": "",
        "address_1_city": "",
        "address_1_district": "",
        "address_1_street": "",
        "address_1_postcode": "",
        "birthday": "1990-05-01",
        "lunar_month": "",
        "lunar_day": "",
    }
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def _phones(customer: Customer) -> list[str]:
    return list(Customer.objects.get(pk=customer.pk).phones.values_list("number", flat=True))


def _field_errors(response: Any, name: str) -> list[str]:
    html = response.content.decode()
    return re.findall(rf'data-field-error="{name}">([^<]*)<', html)


# --- the link --------------------------------------------------------------------------------------
def test_link_works_once_and_a_second_use_is_refused(
    clerk: User, customer: Customer, visitor: Client
) -> None:
    # given
    _link, token = selfservice.link_create(actor=clerk, customer=customer)
    # when the customer opens it and sends a new phone number
    page = visitor.get(_url(token), HTTP_ACCEPT_LANGUAGE="en")
    sent = visitor.post(_url(token), _form(phone_1="13911112222"), HTTP_ACCEPT_LANGUAGE="en")
    # then
    assert page.status_code == 200
    assert 'value="138 0013 8000"' in page.content.decode()
    assert 'value="zhang.san@example.com"' in page.content.decode()
    assert 'value="漕溪北路 88 号"' in page.content.decode()
    assert sent.status_code == 302
    assert sent["Location"] == f"{reverse('selfservice:done', args=[token])}?lang=en"
    thanks = visitor.get(sent["Location"])
    assert thanks.status_code == 200
    assert 'data-status="pending"' in thanks.content.decode()
    # and the link is spent
    again = visitor.post(_url(token), _form(phone_1="13933334444"), HTTP_ACCEPT_LANGUAGE="en")
    assert again.status_code == 410
    assert 'data-reason="used"' in again.content.decode()
    assert "already been used" in again.content.decode()
    assert visitor.get(_url(token)).status_code == 410
    assert SelfServiceSubmission.objects.filter(customer=customer).count() == 1


def test_submit_twice_through_the_service_claims_the_link_once(clerk: User, customer: Customer) -> None:
    # given
    _link, token = selfservice.link_create(actor=clerk, customer=customer)
    data = {"phones": ["13800138000", "13911112222"]}
    # when
    first = selfservice.submit(token, data, False, "10.0.0.1")
    with pytest.raises(selfservice.LinkRefused) as refusal:
        selfservice.submit(token, data, False, "10.0.0.1")
    # then
    assert first.status == SubmissionStatus.PENDING
    assert refusal.value.reason == "used"
    assert SelfServiceSubmission.objects.count() == 1
    assert SelfServiceLink.objects.get(pk=first.link_id).used_at is not None


def test_expired_link_is_refused(clerk: User, customer: Customer, visitor: Client) -> None:
    # given a link past its expiry time
    link, token = selfservice.link_create(actor=clerk, customer=customer)
    SelfServiceLink.objects.filter(pk=link.pk).update(
        expires_at=timezone.now() - timezone.timedelta(seconds=1)
    )
    # when
    response = visitor.get(_url(token), HTTP_ACCEPT_LANGUAGE="en")
    # then
    assert response.status_code == 410
    assert 'data-reason="expired"' in response.content.decode()
    assert "expired" in response.content.decode()


def test_a_token_older_than_the_lifetime_is_refused_by_its_signature(
    clerk: User, customer: Customer, settings: Any, django_assert_num_queries: Any
) -> None:
    # given a token signed 73 hours ago (its row would still say "usable")
    link, _token = selfservice.link_create(actor=clerk, customer=customer)
    old_signer = signing.TimestampSigner(salt=selfservice._SIGNING_SALT, sep=".")
    old_signer.timestamp = lambda: signing.b62_encode(int(timezone.now().timestamp()) - 73 * 3600)  # type: ignore[method-assign]
    secret = "x" * 32
    SelfServiceLink.objects.filter(pk=link.pk).update(token_digest=selfservice._digest(secret))
    token = old_signer.sign(f"{link.pk}.{secret}")
    # when / then: refused before any database work
    with django_assert_num_queries(0), pytest.raises(selfservice.LinkRefused) as refusal:
        selfservice.link_open(token)
    assert refusal.value.reason == "expired"


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda token: token[:-2] + ("AA" if not token.endswith("AA") else "BB"), id="signature"),
        pytest.param(lambda token: token.replace(".", ".z", 1), id="secret"),
        pytest.param(
            lambda token: str(int(token.split(".")[0]) + 1) + token[token.index(".") :], id="link_id"
        ),
        pytest.param(
            lambda token: signing.TimestampSigner(key="someone-elses-key", salt="x", sep=".").sign(
                token.rsplit(".", 2)[0]
            ),
            id="foreign_key",
        ),
        pytest.param(lambda token: "not-a-token", id="garbage"),
        pytest.param(lambda token: token * 3, id="too_long"),
    ],
)
def test_tampered_or_foreign_token_is_refused_before_the_database(
    tamper: Any, clerk: User, customer: Customer, visitor: Client, django_assert_num_queries: Any
) -> None:
    # given
    _link, token = selfservice.link_create(actor=clerk, customer=customer)
    forged = tamper(token)
    # when / then
    with django_assert_num_queries(0), pytest.raises(selfservice.LinkRefused) as refusal:
        selfservice.link_open(forged)
    assert refusal.value.reason == "invalid"
    response = visitor.get(_url(forged), HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 404
    assert 'data-reason="invalid"' in response.content.decode()
    assert "张三" not in response.content.decode()


def test_the_secret_must_match_the_stored_digest(clerk: User, customer: Customer) -> None:
    # given a correctly signed token for a real link id, but with a secret that is not its own
    link, _token = selfservice.link_create(actor=clerk, customer=customer)
    token = selfservice._signer().sign(f"{link.pk}.{'y' * 32}")
    # when / then
    with pytest.raises(selfservice.LinkRefused) as refusal:
        selfservice.link_open(token)
    assert refusal.value.reason == "invalid"


def test_a_newer_link_revokes_the_earlier_one(clerk: User, customer: Customer, visitor: Client) -> None:
    # given
    first, first_token = selfservice.link_create(actor=clerk, customer=customer)
    second, second_token = selfservice.link_create(actor=clerk, customer=customer)
    # when
    old = visitor.get(_url(first_token), HTTP_ACCEPT_LANGUAGE="en")
    new = visitor.get(_url(second_token), HTTP_ACCEPT_LANGUAGE="en")
    # then
    assert old.status_code == 410
    assert 'data-reason="revoked"' in old.content.decode()
    assert new.status_code == 200
    assert SelfServiceLink.objects.get(pk=first.pk).revoked_at is not None
    assert SelfServiceLink.objects.get(pk=second.pk).revoked_at is None


def test_only_the_token_digest_is_stored_and_creation_is_on_the_timeline(
    clerk: User, customer: Customer
) -> None:
    # when
    link, token = selfservice.link_create(actor=clerk, customer=customer)
    # then
    secret = token.split(".")[1]
    stored = SelfServiceLink.objects.get(pk=link.pk)
    assert stored.token_digest == selfservice._digest(secret)
    assert secret not in json.dumps(list(SelfServiceLink.objects.values()), default=str)
    assert stored.expires_at - stored.created_at == timezone.timedelta(hours=72)
    event = CustomerEvent.objects.get(customer=customer, kind=EventKind.SELF_SERVICE_LINK)
    assert event.actor_id == clerk.pk
    audit = AuditEvent.objects.get(action="customer.self_service_link")
    assert audit.actor_id == clerk.pk
    assert token not in json.dumps(audit.after)


def test_link_lifetime_follows_the_setting(clerk: User, customer: Customer, settings: Any) -> None:
    settings.SELF_SERVICE_LINK_HOURS = 2
    link, _token = selfservice.link_create(actor=clerk, customer=customer)
    assert link.expires_at - link.created_at == timezone.timedelta(hours=2)


# --- approval -------------------------------------------------------------------------------------
def test_with_approval_required_the_record_waits_and_approving_applies_it(
    clerk: User, customer: Customer, visitor: Client, settings: Any, web_client_as: Any
) -> None:
    # given
    settings.SELF_SERVICE_APPROVAL = "required"
    _link, token = selfservice.link_create(actor=clerk, customer=customer)
    version = customer.version
    # when the customer sends a new phone and ticks consent
    visitor.post(_url(token), _form(phone_1="13911112222", consent="on"))
    # then nothing changed yet
    submission = SelfServiceSubmission.objects.get(customer=customer)
    assert submission.status == SubmissionStatus.PENDING
    assert _phones(customer) == ["+8613800138000"]
    assert Customer.objects.get(pk=customer.pk).version == version
    assert json.loads(submission.payload) == {
        "marketing_consent": True,
        "phones": [
            {"number": "+8613800138000", "kind": "mobile", "label": "本人", "is_primary": True},
            {"number": "+8613911112222", "kind": "mobile", "label": "", "is_primary": False},
        ],
    }
    # and the queue shows it to the clerk, masked
    client = web_client_as(clerk)
    queue = client.get(reverse("selfservice:review_queue"), HTTP_ACCEPT_LANGUAGE="en")
    html = queue.content.decode()
    assert queue.status_code == 200
    assert customer.code in html
    assert "139****2222" in html
    assert "13911112222" not in html
    # when the clerk approves
    approved = post(client, reverse("selfservice:submission_approve", args=[submission.pk]))
    # then the record has the new phone, and history and timeline name the clerk
    assert approved.status_code == 302
    assert _phones(customer) == ["+8613800138000", "+8613911112222"]
    fresh = Customer.objects.get(pk=customer.pk)
    assert fresh.marketing_consent is True
    assert fresh.consent_updated_at is not None
    assert fresh.version == version + 1
    change = CustomerChange.objects.get(customer=customer, field="phones")
    assert change.event.actor_id == clerk.pk
    assert json.loads(change.after) == ["+8613800138000", "+8613911112222"]
    kinds = list(
        CustomerEvent.objects.filter(customer=customer)
        .order_by("occurred_at", "id")
        .values_list("kind", flat=True)
    )
    assert kinds == [
        EventKind.CREATED,
        EventKind.SELF_SERVICE_LINK,
        EventKind.SELF_SERVICE_SUBMITTED,
        EventKind.UPDATED,
        EventKind.SELF_SERVICE_REVIEWED,
    ]
    reviewed = CustomerEvent.objects.get(customer=customer, kind=EventKind.SELF_SERVICE_REVIEWED)
    assert reviewed.actor_id == clerk.pk
    assert reviewed.data["status"] == SubmissionStatus.APPLIED
    submission.refresh_from_db()
    assert submission.status == SubmissionStatus.APPLIED
    assert submission.reviewed_by_id == clerk.pk
    assert AuditEvent.objects.filter(action="customer.self_service_approve", actor_id=clerk.pk).count() == 1
    assert (
        client.get(reverse("selfservice:review_queue")).content.decode().count('data-testid="submission"')
        == 0
    )


def test_with_auto_approval_changes_apply_at_once(
    customer: Customer, clerk: User, visitor: Client, settings: Any
) -> None:
    # given
    settings.SELF_SERVICE_APPROVAL = "auto"
    _link, token = selfservice.link_create(actor=clerk, customer=customer)
    # when
    sent = visitor.post(
        _url(token),
        _form(email_0="zs@example.net", birthday="1991-06-02", lunar_month="8", lunar_day="15"),
    )
    # then
    assert sent.status_code == 302
    fresh = Customer.objects.get(pk=customer.pk)
    assert list(fresh.emails.values_list("address", flat=True)) == ["zs@example.net"]
    assert fresh.birthday.isoformat() == "1991-06-02"
    assert (fresh.lunar_birthday_month, fresh.lunar_birthday_day) == (8, 15)
    assert fresh.marketing_consent is False
    assert SelfServiceSubmission.objects.get(customer=customer).status == SubmissionStatus.APPLIED
    updated = CustomerEvent.objects.get(customer=customer, kind=EventKind.UPDATED)
    assert updated.actor_id is None
    assert updated.channel == "self_service"
    assert set(updated.data["fields"]) == {"birthday", "emails", "lunar_birthday", "marketing_consent"}
    assert 'data-status="applied"' in visitor.get(sent["Location"]).content.decode()


def test_nothing_changed_still_spends_the_link_and_needs_no_review(
    customer: Customer, clerk: User, visitor: Client, settings: Any
) -> None:
    settings.SELF_SERVICE_APPROVAL = "required"
    customer_version = customer.version
    _link, token = selfservice.link_create(actor=clerk, customer=customer)
    Customer.objects.filter(pk=customer.pk).update(marketing_consent=False)

    sent = visitor.post(_url(token), _form())

    submission = SelfServiceSubmission.objects.get(customer=customer)
    assert submission.status == SubmissionStatus.APPLIED
    assert json.loads(submission.payload) == {}
    assert Customer.objects.get(pk=customer.pk).version == customer_version
    assert 'data-status="confirmed"' in visitor.get(sent["Location"]).content.decode()


def test_reject_leaves_the_record_unchanged(
    clerk: User, customer: Customer, visitor: Client, web_client_as: Any
) -> None:
    # given a pending submission
    _link, token = selfservice.link_create(actor=clerk, customer=customer)
    visitor.post(_url(token), _form(phone_0="13911112222", address_0_street="另一条路 1 号"))
    submission = SelfServiceSubmission.objects.get(customer=customer)
    before = Customer.objects.filter(pk=customer.pk).values().get()
    # when
    response = post(
        web_client_as(clerk),
        reverse("selfservice:submission_reject", args=[submission.pk]),
        {"reason": "号码不对"},
    )
    # then
    assert response.status_code == 302
    assert Customer.objects.filter(pk=customer.pk).values().get() == before
    assert _phones(customer) == ["+8613800138000"]
    assert list(Customer.objects.get(pk=customer.pk).addresses.values_list("street", flat=True)) == [
        "漕溪北路 88 号"
    ]
    assert not CustomerChange.objects.filter(customer=customer).exists()
    submission.refresh_from_db()
    assert submission.status == SubmissionStatus.REJECTED
    reviewed = CustomerEvent.objects.get(customer=customer, kind=EventKind.SELF_SERVICE_REVIEWED)
    assert reviewed.data == {"submission_id": submission.pk, "status": "rejected", "reason": "号码不对"}
    # and a reviewed submission cannot be approved afterwards
    with translation.override("en"), pytest.raises(Conflict, match="already reviewed"):
        selfservice.submission_approve(actor=clerk, submission=submission)
    assert _phones(customer) == ["+8613800138000"]


def test_reviewer_with_view_sensitive_sees_full_values(
    make_user: Any, customer: Customer, clerk: User, departments: dict[str, Department], web_client_as: Any
) -> None:
    manager = make_user(
        permissions=["customers.view", "customers.change", "customers.view_sensitive"],
        scope="department",
        department=departments["store_a"],
    )
    _link, token = selfservice.link_create(actor=clerk, customer=customer)
    selfservice.submit(token, {"phones": ["13911112222"]}, False, None)

    html = web_client_as(manager).get(reverse("selfservice:review_queue")).content.decode()

    assert "+8613911112222" in html
    assert "+8613800138000" in html


# --- validation -------------------------------------------------------------------------------------
def test_validation_errors_are_shown_per_field_in_english(
    clerk: User, customer: Customer, visitor: Client
) -> None:
    # given
    link, token = selfservice.link_create(actor=clerk, customer=customer)
    # when
    response = visitor.post(
        _url(token),
        _form(phone_1="12345", email_0="not-an-email", birthday="2999-01-01", address_0_postcode="12"),
        HTTP_ACCEPT_LANGUAGE="en",
    )
    # then
    assert response.status_code == 422
    assert _field_errors(response, "phone_1") == ["Not a valid phone number."]
    assert _field_errors(response, "phone_0") == []
    assert _field_errors(response, "email_0") == ["An email address needs an @ sign."]
    assert _field_errors(response, "birthday") == ["The birthday is in the future."]
    assert _field_errors(response, "address_0") == ["A postcode has 6 digits."]
    # the customer's input is kept, nothing is saved, and the link still works
    assert 'value="12345"' in response.content.decode()
    assert SelfServiceLink.objects.get(pk=link.pk).used_at is None
    assert not SelfServiceSubmission.objects.exists()
    assert _phones(customer) == ["+8613800138000"]


def test_validation_errors_are_shown_per_field_in_chinese(
    clerk: User, customer: Customer, visitor: Client
) -> None:
    _link, token = selfservice.link_create(actor=clerk, customer=customer)

    response = visitor.post(
        _url(token), _form(phone_0="abc", email_1="x@"), HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9"
    )

    assert response.status_code == 422
    assert '<html lang="zh-hans">' in response.content.decode()
    assert _field_errors(response, "phone_0") == ["不是有效的电话号码。"]
    assert len(_field_errors(response, "email_1")) == 1


def test_the_language_switch_overrides_the_browser(clerk: User, customer: Customer, visitor: Client) -> None:
    _link, token = selfservice.link_create(actor=clerk, customer=customer)

    response = visitor.post(f"{_url(token)}?lang=en", _form(phone_0="abc"), HTTP_ACCEPT_LANGUAGE="zh-CN")

    assert '<html lang="en">' in response.content.decode()
    assert _field_errors(response, "phone_0") == ["Not a valid phone number."]


def test_the_service_refuses_fields_a_customer_may_not_change(clerk: User, customer: Customer) -> None:
    _link, token = selfservice.link_create(actor=clerk, customer=customer)

    with pytest.raises(ValidationFailed) as refusal:
        selfservice.submit(token, {"name": "王五", "owner_id": clerk.pk}, False, None)

    assert set(refusal.value.fields) == {"name", "owner_id"}
    assert Customer.objects.get(pk=customer.pk).name == "张三"


# --- the public page ----------------------------------------------------------------------------------
def test_rate_limit_per_link_answers_429(
    clerk: User, customer: Customer, visitor: Client, settings: Any
) -> None:
    # given
    settings.SELF_SERVICE_MAX_REQUESTS_PER_LINK = 3
    _link, token = selfservice.link_create(actor=clerk, customer=customer)
    # when
    statuses = [visitor.get(_url(token), HTTP_ACCEPT_LANGUAGE="en").status_code for _ in range(3)]
    limited = visitor.get(_url(token), HTTP_ACCEPT_LANGUAGE="en")
    # then
    assert statuses == [200, 200, 200]
    assert limited.status_code == 429
    assert limited["Retry-After"] == "600"
    assert 'data-testid="rate-limited"' in limited.content.decode()
    assert limited["Referrer-Policy"] == "no-referrer"
    # a limited post changes nothing
    assert visitor.post(_url(token), _form(phone_1="13911112222")).status_code == 429
    assert not SelfServiceSubmission.objects.exists()


def test_rate_limit_per_address_counts_every_token(visitor: Client, settings: Any) -> None:
    settings.SELF_SERVICE_MAX_REQUESTS_PER_IP = 2

    statuses = [visitor.get(_url(f"guess-{number}")).status_code for number in range(3)]

    assert statuses == [404, 404, 429]


def test_the_page_never_leaks_its_url_or_other_customers(
    clerk: User, customer: Customer, other_customer: Customer, visitor: Client
) -> None:
    # given
    _link, token = selfservice.link_create(actor=clerk, customer=customer)
    # when
    response = visitor.get(_url(token))
    # then
    html = response.content.decode()
    assert response["Referrer-Policy"] == "no-referrer"
    assert '<meta name="referrer" content="no-referrer">' in html
    assert "noindex" in response["X-Robots-Tag"]
    assert "no-store" in response["Cache-Control"]
    assert "<script" not in html
    assert "default-src 'none'" in response["Content-Security-Policy"]
    assert "张三" in html
    for leaked in (
        "李四",
        "13912345678",
        "139 1234 5678",
        "li.si@example.org",
        "春熙路",
        other_customer.code,
    ):
        assert leaked not in html


# --- staff side and scope -------------------------------------------------------------------------------
def test_staff_create_a_link_as_a_fragment_with_qr_code(
    clerk: User, customer: Customer, web_client_as: Any, visitor: Client
) -> None:
    # when
    response = post(
        web_client_as(clerk), reverse("selfservice:link_create", args=[customer.code]), HTTP_HX_REQUEST="true"
    )
    # then
    html = response.content.decode()
    assert response.status_code == 200
    assert "<svg" in html
    assert 'data-copy-target="#self-service-url"' in html
    assert "<html" not in html
    url = re.search(r'id="self-service-url"[^>]*value="([^"]+)"', html)
    assert url is not None
    assert url.group(1).startswith("http://localhost/s/")
    assert visitor.get(url.group(1).removeprefix("http://localhost")).status_code == 200


def test_api_creates_a_link(clerk: User, customer: Customer, api_as: Any, visitor: Client) -> None:
    response = api_as(clerk).post(f"/api/v1/customers/{customer.code}/self-service-links")

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"url", "expires_at", "qr_svg"}
    assert body["qr_svg"].startswith("<svg")
    assert response["Cache-Control"] == "no-store"
    assert visitor.get(body["url"].removeprefix("http://localhost")).status_code == 200


def test_a_user_outside_the_scope_cannot_create_a_link(
    make_user: Any,
    departments: dict[str, Department],
    other_customer: Customer,
    clerk: User,
    web_client_as: Any,
    api_as: Any,
) -> None:
    # given other_customer belongs to store C, the clerk sits in store A with department scope
    web, api = web_client_as(clerk), api_as(clerk)
    audit_before = AuditEvent.objects.count()
    # when / then
    assert post(web, reverse("selfservice:link_create", args=[other_customer.code])).status_code == 404
    assert api.post(f"/api/v1/customers/{other_customer.code}/self-service-links").status_code == 404
    with pytest.raises(NotFound):
        selfservice.link_create(actor=clerk, customer=other_customer)
    assert not SelfServiceLink.objects.exists()
    assert AuditEvent.objects.count() == audit_before


def test_a_user_without_change_permission_cannot_create_a_link_or_review(
    make_user: Any, departments: dict[str, Department], customer: Customer, web_client_as: Any
) -> None:
    viewer = make_user(permissions=["customers.view"], scope="all", department=departments["store_a"])
    client = web_client_as(viewer)

    assert post(client, reverse("selfservice:link_create", args=[customer.code])).status_code == 403
    assert client.get(reverse("selfservice:review_queue")).status_code == 403
    with pytest.raises(PermissionDeniedError):
        selfservice.link_create(actor=viewer, customer=customer)
    assert not SelfServiceLink.objects.exists()


def test_anonymous_staff_pages_redirect_to_sign_in(customer: Customer) -> None:
    client = Client(SERVER_NAME="localhost")
    assert client.get(reverse("selfservice:review_queue"))["Location"].startswith(reverse("web:login"))
    assert client.post(reverse("selfservice:link_create", args=[customer.code])).status_code == 302
    assert not SelfServiceLink.objects.exists()


def test_a_user_outside_the_scope_cannot_see_or_approve_a_submission(
    make_user: Any,
    departments: dict[str, Department],
    customer: Customer,
    clerk: User,
    web_client_as: Any,
) -> None:
    # given a pending submission of a store-A customer, and a store-C clerk
    _link, token = selfservice.link_create(actor=clerk, customer=customer)
    submission = selfservice.submit(token, {"phones": ["13911112222"]}, True, None)
    outsider = make_user(
        permissions=["customers.view", "customers.change"],
        scope="department",
        department=departments["store_c"],
    )
    client = web_client_as(outsider)
    # when / then
    queue = client.get(reverse("selfservice:review_queue")).content.decode()
    assert customer.code not in queue
    assert post(client, reverse("selfservice:submission_approve", args=[submission.pk])).status_code == 404
    assert post(client, reverse("selfservice:submission_reject", args=[submission.pk])).status_code == 404
    with pytest.raises(NotFound):
        selfservice.submission_approve(actor=outsider, submission=submission)
    submission.refresh_from_db()
    assert submission.status == SubmissionStatus.PENDING
    assert _phones(customer) == ["+8613800138000"]


def test_the_review_queue_costs_the_same_queries_for_one_or_many_submissions(
    clerk: User, departments: dict[str, Department], web_client_as: Any
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def pending_submission(number: int) -> None:
        customer = customer_create(
            actor=None,
            data={
                "name": f"客户{number}",
                "department_id": departments["store_a"].pk,
                "phones": [f"1380013800{number}"],
            },
        )
        _link, token = selfservice.link_create(actor=clerk, customer=customer)
        selfservice.submit(token, {"phones": [f"1391111222{number}"]}, False, None)

    client = web_client_as(clerk)
    pending_submission(1)
    client.get(reverse("selfservice:review_queue"))  # session and permission caches warmed
    with CaptureQueriesContext(connection) as one:
        assert client.get(reverse("selfservice:review_queue")).status_code == 200
    for number in (2, 3, 4):
        pending_submission(number)
    with CaptureQueriesContext(connection) as four:
        html = client.get(reverse("selfservice:review_queue")).content.decode()
    assert html.count('data-testid="submission"') == 4
    assert len(four.captured_queries) == len(one.captured_queries)
