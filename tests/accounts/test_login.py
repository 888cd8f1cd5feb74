"""Signing in and out: throttling per account and per address, and the audit trail of each outcome."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings

from kehu.accounts.errors import InvalidCredentials, LoginThrottled
from kehu.accounts.models import LoginFailure
from kehu.accounts.services import login_attempt
from kehu.core.models import AuditEvent
from tests.factories import TEST_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


def _actions() -> list[str]:
    return list(AuditEvent.objects.order_by("sequence").values_list("action", flat=True))


def test_a_correct_password_signs_in_and_is_audited():
    # given
    user = UserFactory(username="li")
    # when
    signed_in = login_attempt(username="LI", password=TEST_PASSWORD, ip="10.0.0.1")
    # then
    assert signed_in.pk == user.pk
    event = AuditEvent.objects.get()
    assert (event.action, event.actor_id, event.ip) == ("auth.login", user.pk, None)
    user.refresh_from_db()
    assert user.last_login is not None


def test_a_wrong_password_is_refused_and_audited_without_the_password():
    # given
    UserFactory(username="li")
    # when
    with pytest.raises(InvalidCredentials):
        login_attempt(username="li", password="guess-123456", ip="10.0.0.1")
    # then
    event = AuditEvent.objects.get()
    assert event.action == "auth.login_failed"
    assert event.actor_id is None
    assert event.after == {"username": "li", "reason": "bad_credentials"}
    assert LoginFailure.objects.filter(username="li", ip="10.0.0.1").count() == 1


def test_an_unknown_user_is_refused_like_a_wrong_password():
    with pytest.raises(InvalidCredentials):
        login_attempt(username="nobody", password="guess-123456", ip="10.0.0.1")
    assert _actions() == ["auth.login_failed"]


def test_a_deactivated_user_cannot_sign_in_even_with_the_right_password():
    UserFactory(username="gone", is_active=False)
    with pytest.raises(InvalidCredentials):
        login_attempt(username="gone", password=TEST_PASSWORD, ip="10.0.0.1")
    assert AuditEvent.objects.get().after == {"username": "gone", "reason": "inactive"}


@override_settings(LOGIN_MAX_FAILURES_PER_ACCOUNT=3, LOGIN_MAX_FAILURES_PER_IP=100)
def test_too_many_failures_lock_the_account_even_for_the_right_password():
    # given three failures from three addresses
    UserFactory(username="li")
    for number in range(3):
        with pytest.raises(InvalidCredentials):
            login_attempt(username="li", password="guess-123456", ip=f"10.0.0.{number}")
    # when the right password comes next
    with pytest.raises(LoginThrottled) as throttled:
        login_attempt(username="Li", password=TEST_PASSWORD, ip="10.0.0.9")
    # then
    assert throttled.value.code == "login_throttled"
    assert throttled.value.status == 429
    assert _actions() == ["auth.login_failed"] * 3 + ["auth.login_throttled"]
    # and a throttled attempt is not counted as another failure
    assert LoginFailure.objects.count() == 3


@override_settings(LOGIN_MAX_FAILURES_PER_ACCOUNT=100, LOGIN_MAX_FAILURES_PER_IP=3)
def test_too_many_failures_from_one_address_lock_that_address():
    # given one address guessing across three accounts
    UserFactory(username="li")
    for name in ("a", "b", "c"):
        with pytest.raises(InvalidCredentials):
            login_attempt(username=name, password="guess-123456", ip="10.0.0.66")
    # when
    with pytest.raises(LoginThrottled):
        login_attempt(username="li", password=TEST_PASSWORD, ip="10.0.0.66")
    # then another address still gets in
    assert login_attempt(username="li", password=TEST_PASSWORD, ip="10.0.0.7").username == "li"


@override_settings(LOGIN_MAX_FAILURES_PER_ACCOUNT=3, LOGIN_MAX_FAILURES_PER_IP=100)
def test_a_success_before_the_limit_clears_the_accounts_failures():
    UserFactory(username="li")
    for _attempt in range(2):
        with pytest.raises(InvalidCredentials):
            login_attempt(username="li", password="guess-123456", ip="10.0.0.1")
    login_attempt(username="li", password=TEST_PASSWORD, ip="10.0.0.1")
    assert LoginFailure.objects.filter(username="li").count() == 0


@override_settings(LOGIN_MAX_FAILURES_PER_ACCOUNT=2, LOGIN_MAX_FAILURES_PER_IP=100)
def test_the_login_page_answers_429_when_throttled():
    # given
    UserFactory(username="li")
    browser = Client()
    for _attempt in range(2):
        assert browser.post("/login/", {"username": "li", "password": "guess-123456"}).status_code == 401
    # when
    response = browser.post("/login/", {"username": "li", "password": TEST_PASSWORD})
    # then
    assert response.status_code == 429
    assert "_auth_user_id" not in browser.session
    assert _actions() == ["auth.login_failed", "auth.login_failed", "auth.login_throttled"]


def test_signing_in_and_out_through_the_pages_is_audited():
    # given
    user = UserFactory(username="li")
    browser = Client()
    # when
    signed_in = browser.post("/login/", {"username": "li", "password": TEST_PASSWORD})
    signed_out = browser.post("/logout/")
    # then
    assert signed_in.status_code == 302
    assert signed_out.status_code == 302
    assert _actions() == ["auth.login", "auth.logout"]
    assert AuditEvent.objects.get(action="auth.logout").actor_id == user.pk
    assert AuditEvent.objects.get(action="auth.login").channel == "web"
    assert browser.get("/").status_code == 302
