"""Signing in and out, sign-in throttling and session housekeeping."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.sessions.models import Session
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from kehu.accounts.errors import (
    InvalidCredentials,
    LoginThrottled,
)
from kehu.accounts.models import LoginFailure, User, UserSession
from kehu.core.audit import audit_record


# --- signing in and out ---------------------------------------------------------------------
def _recent_failures(**lookup: Any) -> int:
    since = timezone.now() - timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS)
    return LoginFailure.objects.filter(created_at__gte=since, **lookup).count()


def login_attempt(*, username: str, password: str, ip: str | None) -> User:
    """Check a sign-in; every outcome is audited and failures are throttled per account and address.

    The throttle counts failures in a sliding window, so a locked account frees itself after
    the window without an administrator, and one address cannot guess across many accounts.
    """
    username = username.strip()[:150]
    # The refusals are raised only after their transactions commit: raising inside the atomic
    # block would roll back the failure record and its audit event, and nothing would be throttled.
    with transaction.atomic():
        throttled = _recent_failures(
            username__iexact=username
        ) >= settings.LOGIN_MAX_FAILURES_PER_ACCOUNT or (
            ip is not None and _recent_failures(ip=ip) >= settings.LOGIN_MAX_FAILURES_PER_IP
        )
        if throttled:
            audit_record(
                actor=None,
                action="auth.login_throttled",
                object_type="accounts.user",
                object_repr=username,
                after={"username": username},
            )
    if throttled:
        raise LoginThrottled(_("Too many failed sign-in attempts. Try again in a few minutes."))
    user = User.objects.filter(username__iexact=username).first()
    password_ok = user.check_password(password) if user is not None else False
    if user is None:
        # Spend the same time as a real check so the response time does not reveal user names.
        User().set_password(password)
    if user is None or not password_ok or not user.is_active:
        with transaction.atomic():
            LoginFailure.objects.create(username=username.lower(), ip=ip)
            audit_record(
                actor=None,
                action="auth.login_failed",
                target=user,
                object_type="accounts.user",
                object_repr=username,
                after={
                    "username": username,
                    "reason": "inactive" if user is not None and password_ok else "bad_credentials",
                },
            )
        raise InvalidCredentials(_("Wrong user name or password."))
    with transaction.atomic():
        LoginFailure.objects.filter(username=username.lower()).delete()
        User.objects.filter(pk=user.pk).update(last_login=timezone.now())
        audit_record(actor=user, action="auth.login", target=user)
    return user


@transaction.atomic
def session_register(*, user: User, session_key: str, ip: str | None, user_agent: str) -> None:
    UserSession.objects.update_or_create(
        session_key=session_key,
        defaults={"user": user, "ip": ip, "user_agent": user_agent[:255]},
    )


@transaction.atomic
def logout_record(*, user: User, session_key: str | None) -> None:
    if session_key:
        UserSession.objects.filter(session_key=session_key).delete()
    audit_record(actor=user, action="auth.logout", target=user)


def sessions_prune() -> int:
    """Drop expired sessions and their records, and sign-in failures older than the window."""
    now = timezone.now()
    expired = list(Session.objects.filter(expire_date__lt=now).values_list("session_key", flat=True))
    with transaction.atomic():
        Session.objects.filter(session_key__in=expired).delete()
        UserSession.objects.filter(session_key__in=expired).delete()
        LoginFailure.objects.filter(
            created_at__lt=now - timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS)
        ).delete()
    return len(expired)
