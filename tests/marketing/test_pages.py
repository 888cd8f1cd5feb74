"""Segment pages: the permission and scope matrix, and the rule builder's behaviour (its edits,
live count, errors, and that a saved tree survives a round trip through the form).

``SEGMENT_PAGES`` is meant for tests/web/test_page_matrix.py too.
"""

from __future__ import annotations

import dataclasses
from html.parser import HTMLParser
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from kehu.accounts.models import Department, User
from kehu.analytics.models import CustomerMetrics
from kehu.customers.models import Customer, Tag
from kehu.customers.services import customer_create
from kehu.marketing.models import Segment, SegmentMember
from kehu.marketing.selectors import segment_members
from kehu.marketing.services.segments import segment_create
from tests.web.conftest import post
from tests.web.page_matrix import ALLOWED, Page, PageWorld, page_cases, run_page_case

pytestmark = pytest.mark.django_db

FAR_NAME = "远方客户"
FAR_RULES = {"op": "and", "rules": [{"field": "name", "operator": "eq", "value": FAR_NAME}]}
FORM = {"name": "页面分群", "kind": "dynamic", "r:group": "1", "r:op": "and",
        "r.0:field": "name", "r.0:operator": "eq", "r.0:value": FAR_NAME}  # fmt: skip


@pytest.fixture
def page_world(departments: dict[str, Department], make_user: Any, admin_user: User) -> PageWorld:
    def client_for(user: User | None) -> Client:
        client = Client(SERVER_NAME="localhost", enforce_csrf_checks=True)
        if user is not None:
            client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
        return client

    return PageWorld(departments=departments, make_user=make_user, admin=admin_user, client_for=client_for)


def _far_customer(world: PageWorld) -> Customer:
    return customer_create(
        actor=None,
        data={"name": FAR_NAME, "phones": ["13966660000"], "department_id": world.departments["store_c"].pk},
        allow_duplicate=True,
    )


def _segment(world: PageWorld, kind: str = "dynamic") -> Segment:
    _far_customer(world)
    return segment_create(actor=None, name=f"矩阵-{kind}", rules=FAR_RULES, kind=kind)


SEGMENT_PAGES = [
    Page("segment_list", "GET", "marketing:segment_list", ("segments.view",)),
    Page("segment_new", "GET", "marketing:segment_builder", ("segments.create",), requires=("segments.view",)),
    Page(
        "segment_new",
        "POST",
        "marketing:segment_builder",
        ("segments.create",),
        requires=("segments.view", "customers.view"),
        data=FORM,
        allowed_status=302,
        effect=lambda _target: Segment.objects.filter(name="页面分群", rules=FAR_RULES).exists(),
    ),
    Page("segment_edit", "GET", "marketing:segment_builder", ("segments.change",), requires=("segments.view",),
         target=_segment),
    Page(
        "segment_edit",
        "POST",
        "marketing:segment_builder",
        ("segments.change",),
        requires=("segments.view", "customers.view"),
        target=_segment,
        data={**FORM, "version": "1"},
        allowed_status=302,
        effect=lambda segment: segment is not None and (segment.name, segment.version) == ("页面分群", 2),
    ),
    Page("segment_builder_tree", "POST", "marketing:segment_builder_tree", ("segments.view",),
         requires=("customers.view",), data={**FORM, "action": "add_condition:r"}),
    Page("segment_builder_count", "POST", "marketing:segment_builder_count", ("segments.view",),
         requires=("customers.view",), data=FORM),
    Page("segment_detail", "GET", "marketing:segment_detail", ("segments.view",), requires=("customers.view",),
         target=_segment),
    Page(
        "segment_snapshot",
        "POST",
        "marketing:segment_snapshot",
        ("segments.change",),
        requires=("segments.view",),
        target=lambda world: _segment(world, "static"),
        allowed_status=302,
        effect=lambda segment: SegmentMember.objects.filter(segment=segment).count() == 1,
    ),
    Page(
        "segment_delete",
        "POST",
        "marketing:segment_delete",
        ("segments.delete",),
        requires=("segments.view",),
        target=_segment,
        allowed_status=302,
        effect=lambda segment: segment is not None and segment.deleted_at is not None,
    ),
]  # fmt: skip


def _segment_rows() -> tuple[Any, ...]:
    return (
        SegmentMember.objects.count(),
        list(
            Segment.objects.order_by("pk").values_list("pk", "name", "version", "deleted_at", "rules", "kind")
        ),
    )


@pytest.mark.parametrize(("page", "kind"), page_cases(SEGMENT_PAGES))
def test_segment_page_permission_and_scope(page: Page, kind: str, page_world: PageWorld) -> None:
    noted: dict[str, Any] = {}
    make = page.target

    def target(world: PageWorld) -> Any:
        made = make(world) if make is not None else None
        noted["rows"] = _segment_rows()
        return made

    guarded = dataclasses.replace(page, target=target if make is not None else None)
    if make is None:
        noted["rows"] = _segment_rows()
    run_page_case(guarded, kind, page_world)
    if kind != ALLOWED:
        assert _segment_rows() == noted["rows"]


def test_every_segment_page_is_in_the_matrix() -> None:
    from kehu.marketing import urls

    published = {f"marketing:{pattern.name}" for pattern in urls.urlpatterns}
    assert published == {page.url_name for page in SEGMENT_PAGES}


@pytest.mark.parametrize("kind", ["out_of_scope", "allowed"])
@pytest.mark.parametrize("where", ["detail", "count"])
def test_pages_leave_out_members_outside_the_scope(kind: str, where: str, page_world: PageWorld) -> None:
    # given a segment whose member sits in store C, and a viewer in store A
    customer = _far_customer(page_world)
    segment = segment_create(actor=None, name="远方", rules=FAR_RULES)
    viewer = page_world.make_user(
        permissions=["segments.view", "customers.view"],
        scope="department" if kind == "out_of_scope" else "all",
        department=page_world.departments["store_a"],
    )
    client = page_world.client_for(viewer)
    # when
    if where == "detail":
        response = client.get(reverse("marketing:segment_detail", args=[segment.pk]))
        shown = customer.code in response.content.decode()
    else:
        response = post(client, reverse("marketing:segment_builder_count"), FORM)
        shown = 'data-testid="live-count">1<' in response.content.decode()
    # then
    assert response.status_code == 200
    assert shown is (kind == "allowed")


# --- the builder ----------------------------------------------------------------------------------------
@pytest.fixture
def editor(page_world: PageWorld) -> Client:
    user = page_world.make_user(
        permissions=["segments.view", "segments.create", "segments.change", "customers.view"], scope="all"
    )
    return page_world.client_for(user)


def _tree(client: Client, data: dict[str, Any]) -> str:
    response = post(client, reverse("marketing:segment_builder_tree"), data)
    assert response.status_code == 200
    return response.content.decode()


def test_the_builder_adds_and_removes_conditions_and_groups(editor: Client) -> None:
    html = _tree(editor, {"r:group": "1", "action": "add_condition:r"})
    assert 'data-testid="condition-r.0"' in html
    html = _tree(editor, {**FORM, "action": "add_group:r"})
    assert 'data-testid="condition-r.0"' in html
    assert 'data-testid="group-r.1"' in html
    html = _tree(editor, {**FORM, "r.1:group": "1", "r.1:op": "or", "action": "add_condition:r.1"})
    assert 'data-testid="condition-r.1.0"' in html
    html = _tree(editor, {**FORM, "r.1:group": "1", "action": "remove:r.0"})
    assert 'data-testid="condition-r.0"' not in html
    assert 'data-testid="group-r.0"' in html
    # the live count comes along, out of band
    assert 'id="live-count" hx-swap-oob="true"' in html


def test_choosing_a_field_offers_its_operators(editor: Client) -> None:
    html = _tree(editor, {"r:group": "1", "r.0:field": "rfm_segment", "r.0:operator": "contains"})
    assert '<option value="eq" selected>' in html
    assert 'value="champions"' in html
    assert 'value="contains"' not in html


def test_the_live_count_follows_the_rules(editor: Client, page_world: PageWorld) -> None:
    _far_customer(page_world)
    url = reverse("marketing:segment_builder_count")
    assert 'data-testid="live-count">1<' in post(editor, url, FORM).content.decode()
    assert 'data-testid="live-count">0<' in post(editor, url, {**FORM, "r:not": "1"}).content.decode()
    wrong = post(
        editor, url, {**FORM, "r.0:field": "orders_count", "r.0:operator": "gt", "r.0:value": "many"}
    )
    assert "rules.0.value: Expected a whole number." in wrong.content.decode()


def test_a_wrong_rule_is_shown_at_its_condition_and_nothing_is_saved(editor: Client) -> None:
    data = {**FORM, "r.0:field": "clv", "r.0:operator": "gt", "r.0:value": "1.234"}
    response = post(editor, reverse("marketing:segment_builder"), data)
    assert response.status_code == 422
    html = response.content.decode()
    condition = html[html.index('data-testid="condition-r.0"') :]
    assert (
        "Amounts have at most two decimal places."
        in condition[: condition.index('data-testid="rule-error"') + 200]
    )
    assert not Segment.objects.exists()


class _FormFields(HTMLParser):
    """The values a browser would post for the segment form."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: list[tuple[str, str]] = []
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        name = attributes.get("name")
        if tag == "input" and name and name != "csrfmiddlewaretoken":
            if attributes.get("type") in ("checkbox", "radio") and "checked" not in attributes:
                return
            self.fields.append((name, attributes.get("value") or ""))
        elif tag == "select":
            self._select = name
        elif tag == "option" and self._select and "selected" in attributes:
            self.fields.append((self._select, attributes.get("value") or ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None


def test_a_saved_tree_survives_the_round_trip_through_the_form(editor: Client, page_world: PageWorld) -> None:
    # given a segment with nested groups, lists, ranges, money, days and a negated group
    Tag.objects.create(name="VIP")
    Tag.objects.create(name="老客")
    CustomerMetrics.objects.create(customer=_far_customer(page_world), rfm_segment="champions")
    rules = {
        "op": "and",
        "rules": [
            {"field": "rfm_segment", "operator": "in", "value": ["champions", "loyal"]},
            {"op": "or", "not": True, "rules": [
                {"field": "tags", "operator": "has_all", "value": ["VIP", "老客"]},
                {"field": "clv", "operator": "between", "value": ["100.00", "250.50"]},
                {"op": "and", "rules": [{"field": "ordered", "operator": "not_in_last_days", "value": 90}]},
            ]},
            {"field": "in_pool", "operator": "is_true", "value": None},
            {"field": "churn_risk", "operator": "gt", "value": 0.5},
        ],
    }  # fmt: skip
    segment = segment_create(actor=None, name="往返", rules=rules)
    # when the edit page is posted back as it was drawn
    page = editor.get(reverse("marketing:segment_builder", args=[segment.pk]))
    parser = _FormFields()
    parser.feed(page.content.decode())
    data: dict[str, list[str]] = {}
    for name, value in parser.fields:
        data.setdefault(name, []).append(value)
    response = post(editor, reverse("marketing:segment_builder", args=[segment.pk]), data)
    # then the rules are what they were
    assert response.status_code == 302, response.content.decode()[-2000:]
    segment.refresh_from_db()
    assert segment.rules == rules
    assert segment.version == 2


def test_the_detail_page_shows_rules_count_and_masked_members(editor: Client, page_world: PageWorld) -> None:
    customer = _far_customer(page_world)
    segment = segment_create(actor=None, name="远方", rules=FAR_RULES)
    html = editor.get(reverse("marketing:segment_detail", args=[segment.pk])).content.decode()
    assert customer.code in html
    assert "139****0000" in html
    assert "13966660000" not in html
    assert 'data-testid="segment-count">1<' in html
    assert "Name</strong> is 远方客户" in html


def test_more_members_come_as_rows_for_htmx(editor: Client, page_world: PageWorld) -> None:
    codes = [_far_customer(page_world).code for _index in range(3)]
    segment = segment_create(actor=None, name="远方", rules=FAR_RULES)
    url = reverse("marketing:segment_detail", args=[segment.pk])
    first = editor.get(url).content.decode()
    assert all(code in first for code in codes)
    viewer = User.objects.get(pk=int(editor.session["_auth_user_id"]))
    cursor = segment_members(viewer, segment, limit=1).next_cursor
    rows = editor.get(url, {"after": cursor}, HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in rows
    assert [code for code in codes if code in rows] == codes[:2]


def test_rules_that_no_longer_apply_are_explained(editor: Client, page_world: PageWorld) -> None:
    tag = Tag.objects.create(name="将删除")
    segment = segment_create(
        actor=None,
        name="标签",
        rules={"op": "and", "rules": [{"field": "tags", "operator": "has_any", "value": ["将删除"]}]},
    )
    tag.delete()
    html = editor.get(reverse("marketing:segment_detail", args=[segment.pk])).content.decode()
    assert 'data-testid="rules-error"' in html
    assert "rules.0.value.0: “将删除” is not one of the choices." in html
