"""Card pages: issue, card page with its actions and ledger, list, card types and tiers, liabilities.

Each page: the status and content for a permitted user, 403 without the permission, 404 for a
card outside the viewer's scope, and a refused write that changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from kehu.accounts.models import Department, User
from kehu.customers.models import Customer
from kehu.customers.services import customer_create
from kehu.loyalty.models import Card, CardStatus, CardType, LedgerEntry, LedgerOperation
from kehu.loyalty.services.cards import card_issue
from tests.web.conftest import post
from tests.web.loyalty_helpers import make_programme
from tests.web.page_matrix import Page, PageWorld, page_cases, run_page_case

pytestmark = pytest.mark.django_db

EN = {"HTTP_ACCEPT_LANGUAGE": "en"}


@pytest.fixture
def programme(db: None) -> dict[str, Any]:
    return make_programme()


def make_customer(department: Department, *, name: str = "成都客户", phone: str = "13900001111") -> Customer:
    return customer_create(
        actor=None,
        data={"name": name, "phones": [{"number": phone}], "department_id": department.pk},
        allow_duplicate=True,
    )


def issue(customer: Customer, card_type: CardType) -> Card:
    return card_issue(actor=None, card_type=card_type, customer=customer, payment_method="cash").card


@pytest.fixture
def page_world(
    departments: dict[str, Department], make_user: Any, admin_user: User, client_for: Any
) -> PageWorld:
    return PageWorld(departments=departments, make_user=make_user, admin=admin_user, client_for=client_for)


def _card_in_store_c(world: PageWorld) -> Card:
    stored = CardType.objects.get(code="sv")
    return issue(make_customer(world.departments["store_c"]), stored)


def _customer_in_store_c(world: PageWorld) -> Customer:
    return make_customer(world.departments["store_c"])


PAGES = [
    Page("card_list", "GET", "loyalty:card_list", ("cards.view",)),
    Page("card_issue", "GET", "loyalty:card_issue", ("cards.create",)),
    Page(
        "card_detail",
        "GET",
        "loyalty:card_detail",
        ("cards.view",),
        target=_card_in_store_c,
        is_scoped=True,
        url_arg="number",
    ),
    Page(
        "card_ledger",
        "GET",
        "loyalty:card_ledger",
        ("cards.view",),
        target=_card_in_store_c,
        is_scoped=True,
        url_arg="number",
    ),
    Page(
        "customer_cards",
        "GET",
        "loyalty:customer_cards",
        ("cards.view",),
        requires=("customers.view",),
        target=_customer_in_store_c,
        is_scoped=True,
        url_arg="code",
    ),
    Page("card_type_list", "GET", "loyalty:card_type_list", ("card_types.view",)),
    Page("card_type_create", "GET", "loyalty:card_type_create", ("card_types.create",)),
    Page("tier_create", "GET", "loyalty:tier_create", ("card_types.create",)),
    Page("ledger_report", "GET", "loyalty:ledger_report", ("ledger.view",)),
    Page("ledger_reconcile", "POST", "loyalty:ledger_reconcile", ("ledger.view",)),
]


@pytest.mark.parametrize(("page", "kind"), page_cases(PAGES))
def test_page_matrix(page: Page, kind: str, page_world: PageWorld, programme: dict[str, Any]) -> None:
    run_page_case(page, kind, page_world)


# --- issue ---------------------------------------------------------------------------------------
@pytest.fixture
def clerk(make_user: Callable[..., User], departments: dict[str, Department]) -> User:
    return make_user(
        permissions=["cards.view", "cards.create", "cards.change", "customers.view", "customers.create"],
        scope="department",
        department=departments["store_a"],
        username="clerk",
    )


def test_issue_form_creates_the_customer_and_the_card(
    web_client_as: Callable[[User], Client], clerk: User, programme: dict[str, Any]
) -> None:
    client = web_client_as(clerk)
    page = client.get(reverse("loyalty:card_issue"), **EN)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="key"' in html
    assert "autofocus" in html
    key = page.context["form"].initial["key"]
    data = {
        "customer": "139 0000 2222",
        "name": "新会员",
        "card_type": programme["stored"].pk,
        "number": "",
        "payment_method": "cash",
        "amount": "1000.00",
        "payment_reference": "",
        "key": key,
    }
    response = post(client, reverse("loyalty:card_issue"), data)
    card = Card.objects.get(customer__name="新会员")
    assert response.status_code == 302
    assert response["Location"] == reverse("loyalty:card_detail", args=[card.number])
    # 充1000送100: the bonus rule applies on issue too.
    assert card.stored_value_fen == 110000
    assert card.customer.department_id == clerk.department_id
    # The same form sent twice (a double click) issues one card.
    again = post(client, reverse("loyalty:card_issue"), data)
    assert again.status_code == 302
    assert again["Location"] == response["Location"]
    assert Card.objects.filter(customer__name="新会员").count() == 1


def test_issue_form_finds_an_existing_customer_by_code(
    web_client_as: Callable[[User], Client], clerk: User, programme: dict[str, Any]
) -> None:
    customer = make_customer(clerk.department, name="老客户", phone="13700003333")
    client = web_client_as(clerk)
    lookup = client.get(reverse("loyalty:customer_lookup"), {"customer": customer.code}, **EN)
    assert lookup.status_code == 200
    assert "老客户" in lookup.content.decode()
    assert "13700003333" not in lookup.content.decode()  # masked
    response = post(
        client,
        reverse("loyalty:card_issue"),
        {
            "customer": customer.code.lower(),
            "card_type": programme["year"].pk,
            "payment_method": "wechat",
            "amount": "",
            "payment_reference": "WX1",
        },
    )
    assert response.status_code == 302
    card = Card.objects.get(customer=customer)
    assert card.card_type == programme["year"]
    assert card.expires_on is not None


def test_issue_refusals_show_beside_the_field_and_change_nothing(
    web_client_as: Callable[[User], Client], clerk: User, programme: dict[str, Any]
) -> None:
    customer = make_customer(clerk.department)
    taken = issue(customer, programme["year"])
    client = web_client_as(clerk)
    before = (Card.objects.count(), Customer.objects.count(), LedgerEntry.objects.count())
    base = {"customer": customer.code, "card_type": programme["year"].pk, "payment_method": "cash"}
    # A number that exists.
    response = post(client, reverse("loyalty:card_issue"), {**base, "number": taken.number}, **EN)
    assert response.status_code == 409
    assert "already in use" in response.content.decode()
    assert 'data-field-error="number"' in response.content.decode()
    # More than two decimals.
    response = post(client, reverse("loyalty:card_issue"), {**base, "amount": "1.005"}, **EN)
    assert response.status_code == 422
    assert 'data-field-error="amount"' in response.content.decode()
    # An unknown phone without a name.
    response = post(client, reverse("loyalty:card_issue"), {**base, "customer": "13600004444"}, **EN)
    assert response.status_code == 422
    assert 'data-field-error="name"' in response.content.decode()
    assert (Card.objects.count(), Customer.objects.count(), LedgerEntry.objects.count()) == before


def test_issue_needs_cards_create(
    web_client_as: Callable[[User], Client], make_user: Callable[..., User], programme: dict[str, Any]
) -> None:
    viewer = make_user(permissions=["cards.view", "customers.view", "customers.create"])
    client = web_client_as(viewer)
    response = post(
        client,
        reverse("loyalty:card_issue"),
        {
            "customer": "13600005555",
            "name": "某人",
            "card_type": programme["year"].pk,
            "payment_method": "cash",
        },
    )
    assert response.status_code == 403
    assert not Card.objects.exists()


def test_price_fragment_prefills_the_amount(
    web_client_as: Callable[[User], Client], clerk: User, programme: dict[str, Any]
) -> None:
    response = web_client_as(clerk).get(
        reverse("loyalty:card_type_price"), {"card_type": programme["year"].pk}
    )
    assert response.status_code == 200
    assert 'value="1999.00"' in response.content.decode()


# --- the card page and its actions -----------------------------------------------------------------
@pytest.fixture
def card(clerk: User, programme: dict[str, Any]) -> Card:
    return issue(make_customer(clerk.department), programme["stored"])


def action_url(card: Card, action: str) -> str:
    return reverse("loyalty:card_action", args=[card.number, action])


def test_card_page_shows_balances_qr_and_ledger(
    web_client_as: Callable[[User], Client], clerk: User, card: Card
) -> None:
    response = web_client_as(clerk).get(reverse("loyalty:card_detail", args=[card.number]), **EN)
    html = response.content.decode()
    assert response.status_code == 200
    assert "<svg" in html
    assert "¥1,100.00" in html  # 1,000 loaded + 100 bonus
    assert 'data-testid="ledger"' in html
    assert "+¥1,000.00" in html
    # Actions offered to a clerk with cards.change on an active stored-value card; no adjust (ledger.change).
    for action in ("top_up", "spend", "freeze", "report_lost"):
        assert f'data-action="{action}"' in html
    assert 'data-action="adjust"' not in html
    assert 'data-action="unfreeze"' not in html


def test_top_up_and_spend_from_the_card_page(
    web_client_as: Callable[[User], Client], clerk: User, card: Card
) -> None:
    client = web_client_as(clerk)
    response = post(
        client, action_url(card, "top_up"), {"amount": "500", "payment_method": "cash", "key": "k-top-1"}
    )
    assert response.status_code == 302
    card.refresh_from_db()
    assert card.stored_value_fen == 110000 + 50000 + 0
    # Sent again with the same key: nothing more.
    post(client, action_url(card, "top_up"), {"amount": "500", "payment_method": "cash", "key": "k-top-1"})
    card.refresh_from_db()
    assert card.stored_value_fen == 160000
    response = post(
        client, action_url(card, "spend"), {"kind": "stored_value", "amount": "12.30", "key": "k-sp-1"}
    )
    assert response.status_code == 302
    card.refresh_from_db()
    assert card.stored_value_fen == 160000 - 1230


def test_overspending_is_refused_beside_the_field_and_changes_nothing(
    web_client_as: Callable[[User], Client], clerk: User, card: Card
) -> None:
    before = (LedgerEntry.objects.count(), LedgerOperation.objects.count())
    response = post(
        web_client_as(clerk),
        action_url(card, "spend"),
        {"kind": "stored_value", "amount": "99999", "key": "k2"},
        **EN,
    )
    assert response.status_code == 409
    html = response.content.decode()
    assert "Not enough" in html
    assert '<details class="card mb-2" data-action="spend" open>' in html
    card.refresh_from_db()
    assert card.stored_value_fen == 110000
    assert (LedgerEntry.objects.count(), LedgerOperation.objects.count()) == before


def test_freeze_unfreeze_report_lost_and_replace(
    web_client_as: Callable[[User], Client], clerk: User, card: Card
) -> None:
    client = web_client_as(clerk)
    # A reason is required to freeze.
    assert post(client, action_url(card, "freeze"), {"reason": ""}).status_code == 422
    card.refresh_from_db()
    assert card.status == CardStatus.ACTIVE
    assert post(client, action_url(card, "freeze"), {"reason": "出差"}).status_code == 302
    card.refresh_from_db()
    assert card.status == CardStatus.FROZEN
    page = client.get(reverse("loyalty:card_detail", args=[card.number])).content.decode()
    assert 'data-action="unfreeze"' in page
    assert 'data-action="top_up"' not in page
    assert post(client, action_url(card, "unfreeze"), {}).status_code == 302
    card.refresh_from_db()
    assert card.status == CardStatus.ACTIVE
    assert post(client, action_url(card, "report_lost"), {"reason": ""}).status_code == 302
    card.refresh_from_db()
    assert card.status == CardStatus.LOST
    response = post(
        client, action_url(card, "replace"), {"new_number": "", "fee": "10", "payment_method": "cash"}
    )
    card.refresh_from_db()
    assert card.status == CardStatus.REPLACED
    assert card.replaced_by is not None
    assert response["Location"] == reverse("loyalty:card_detail", args=[card.replaced_by.number])
    assert card.replaced_by.stored_value_fen == 110000


def test_adjust_needs_ledger_change(
    web_client_as: Callable[[User], Client], clerk: User, make_user: Callable[..., User], card: Card
) -> None:
    before = LedgerEntry.objects.count()
    refused = post(
        web_client_as(clerk),
        action_url(card, "adjust"),
        {"kind": "points", "amount": "100", "reason_text": "补录"},
    )
    assert refused.status_code == 403
    assert LedgerEntry.objects.count() == before
    auditor = make_user(permissions=["cards.view", "ledger.change"], scope="all")
    client = web_client_as(auditor)
    assert (
        'data-action="adjust"'
        in client.get(reverse("loyalty:card_detail", args=[card.number])).content.decode()
    )
    missing_reason = post(
        client, action_url(card, "adjust"), {"kind": "points", "amount": "100", "reason_text": ""}
    )
    assert missing_reason.status_code == 422
    assert LedgerEntry.objects.count() == before
    done = post(
        client, action_url(card, "adjust"), {"kind": "points", "amount": "+100", "reason_text": "补录"}
    )
    assert done.status_code == 302
    card.refresh_from_db()
    assert card.points_balance == 100


def test_cancel_needs_cards_delete(
    web_client_as: Callable[[User], Client], clerk: User, make_user: Callable[..., User], card: Card
) -> None:
    refused = post(
        web_client_as(clerk), action_url(card, "cancel"), {"reason": "退卡", "refund_method": "cash"}
    )
    assert refused.status_code == 403
    manager = make_user(permissions=["cards.view", "cards.delete"], scope="all")
    done = post(
        web_client_as(manager), action_url(card, "cancel"), {"reason": "退卡", "refund_method": "cash"}
    )
    assert done.status_code == 302
    card.refresh_from_db()
    assert card.status == CardStatus.CANCELLED
    assert card.stored_value_fen == 0


def test_actions_on_another_scopes_card_are_404_and_change_nothing(
    web_client_as: Callable[[User], Client],
    clerk: User,
    departments: dict[str, Department],
    programme: dict[str, Any],
) -> None:
    other = issue(make_customer(departments["store_c"]), programme["stored"])
    client = web_client_as(clerk)
    for action, data in (
        ("top_up", {"amount": "10", "payment_method": "cash"}),
        ("spend", {"kind": "stored_value", "amount": "1"}),
        ("freeze", {"reason": "x"}),
    ):
        assert post(client, action_url(other, action), data).status_code == 404
    assert (
        post(client, reverse("loyalty:card_action", args=[other.number, "nonsense"]), {}).status_code == 404
    )
    other.refresh_from_db()
    assert (other.status, other.stored_value_fen) == (CardStatus.ACTIVE, 110000)


def test_ledger_loads_more_by_keyset(
    web_client_as: Callable[[User], Client], clerk: User, card: Card
) -> None:
    from kehu.loyalty.services.cards import card_spend

    for index in range(55):
        card_spend(actor=None, card=card, kind="stored_value", amount=1, key=f"many-{index}")
    client = web_client_as(clerk)
    page = client.get(reverse("loyalty:card_detail", args=[card.number]))
    assert len(page.context["entries"]) == 50
    more_url = page.context["ledger_more_url"]
    assert more_url
    rest = client.get(more_url, HTTP_HX_REQUEST="true")
    assert rest.status_code == 200
    shown = {entry.pk for entry in page.context["entries"]} | {entry.pk for entry in rest.context["entries"]}
    assert shown == set(LedgerEntry.objects.filter(card=card).values_list("pk", flat=True))


# --- list ------------------------------------------------------------------------------------------
def test_card_list_searches_and_filters_within_scope(
    web_client_as: Callable[[User], Client],
    clerk: User,
    card: Card,
    departments: dict[str, Department],
    programme: dict[str, Any],
) -> None:
    other = issue(
        make_customer(departments["store_c"], name="别店客户", phone="13500006666"), programme["year"]
    )
    client = web_client_as(clerk)
    listing = client.get(reverse("loyalty:card_list")).content.decode()
    assert card.number in listing
    assert other.number not in listing
    # A scanned number opens the card; another scope's number finds nothing.
    jump = client.get(reverse("loyalty:card_list"), {"q": card.number})
    assert jump.status_code == 302
    assert client.get(reverse("loyalty:card_list"), {"q": other.number}, **EN).context["nothing_found"]
    by_customer = client.get(reverse("loyalty:card_list"), {"q": card.customer.code})
    assert [item.number for item in by_customer.context["cards"]] == [card.number]
    frozen_only = client.get(reverse("loyalty:card_list"), {"status": "frozen"})
    assert frozen_only.context["cards"] == []


def test_customer_cards_fragment(web_client_as: Callable[[User], Client], clerk: User, card: Card) -> None:
    response = web_client_as(clerk).get(reverse("loyalty:customer_cards", args=[card.customer.code]))
    assert response.status_code == 200
    assert card.number in response.content.decode()


# --- programme admin ---------------------------------------------------------------------------------
def test_liability_report_and_reconcile(
    web_client_as: Callable[[User], Client], make_user: Callable[..., User], card: Card
) -> None:
    accountant = make_user(permissions=["ledger.view"])
    client = web_client_as(accountant)
    report = client.get(reverse("loyalty:ledger_report"), **EN)
    assert report.status_code == 200
    assert "¥1,100.00" in report.content.decode()
    checked = post(client, reverse("loyalty:ledger_reconcile"), {}, **EN)
    assert checked.status_code == 200
    assert 'data-testid="reconcile-clean"' in checked.content.decode()


def test_transfer_points_and_upgrade(
    web_client_as: Callable[[User], Client], clerk: User, card: Card, programme: dict[str, Any]
) -> None:
    from kehu.loyalty.services.cards import ledger_adjust

    ledger_adjust(actor=None, card=card, kind="points", amount=500, reason_text="开卡礼")
    other = issue(make_customer(clerk.department, name="家人", phone="13700009999"), programme["year"])
    client = web_client_as(clerk)
    too_many = post(client, action_url(card, "transfer"), {"to_card": other.number, "points": "600"}, **EN)
    assert too_many.status_code == 409
    unknown = post(client, action_url(card, "transfer"), {"to_card": "0000", "points": "10"}, **EN)
    assert unknown.status_code == 422
    assert 'data-field-error="to_card"' in unknown.content.decode()
    card.refresh_from_db()
    other.refresh_from_db()
    assert (card.points_balance, other.points_balance) == (500, 0)
    done = post(
        client, action_url(card, "transfer"), {"to_card": other.number, "points": "200", "key": "t-1"}
    )
    assert done.status_code == 302
    card.refresh_from_db()
    other.refresh_from_db()
    assert (card.points_balance, other.points_balance) == (300, 200)
    upgraded = post(
        client,
        action_url(other, "upgrade"),
        {"card_type": programme["stored"].pk, "amount": "0", "payment_method": "cash"},
    )
    assert upgraded.status_code == 302
    other.refresh_from_db()
    assert other.card_type == programme["stored"]


def test_customer_lookup_finds_by_phone_within_scope_only(
    web_client_as: Callable[[User], Client], clerk: User, departments: dict[str, Department]
) -> None:
    own = make_customer(clerk.department, name="本店客户", phone="13700004444")
    make_customer(departments["store_c"], name="别店客户", phone="13700005555")
    client = web_client_as(clerk)
    found = client.get(reverse("loyalty:customer_lookup"), {"customer": "137 0000 4444"})
    assert found.context["customer"] == own
    assert "137****4444" in found.content.decode()
    hidden = client.get(reverse("loyalty:customer_lookup"), {"customer": "13700005555"})
    assert hidden.context["customer"] is None
    assert "别店客户" not in hidden.content.decode()
