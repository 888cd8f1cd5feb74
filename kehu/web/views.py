"""Sign-in, sign-out, the language switch and the home page."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import login, logout
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import activate
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST
from django.views.i18n import set_language

from kehu.accounts.errors import InvalidCredentials, LoginThrottled
from kehu.accounts.models import User
from kehu.accounts.services import login_attempt, logout_record, session_register, user_update
from kehu.core.middleware import client_ip
from kehu.core.selectors import audit_daily_counts
from kehu.web.forms import LoginForm


@require_http_methods(["GET", "POST"])
def login_view(request: HttpRequest) -> HttpResponse:
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = ""
    form = LoginForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            user = login_attempt(
                username=form.cleaned_data["username"],
                password=form.cleaned_data["password"],
                ip=client_ip(request),
            )
        except (InvalidCredentials, LoginThrottled) as error:
            form.add_error(None, error.message)
            status = error.status
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            session_register(
                user=user,
                session_key=request.session.session_key or "",
                ip=client_ip(request),
                user_agent=request.META.get("HTTP_USER_AGENT", ""),
            )
            response = redirect(next_url or "web:home")
            if user.language:
                activate(user.language)
                response.set_cookie("django_language", user.language, samesite="Lax")
            return response
    return render(request, "web/login.html", {"form": form, "next": next_url}, status=status)


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    if isinstance(request.user, User):
        logout_record(user=request.user, session_key=request.session.session_key)
    logout(request)
    return redirect("web:login")


@login_required
def home(request: HttpRequest) -> HttpResponse:
    context: dict[str, Any] = {}
    if request.user.has_perm("audit.view"):
        context["signin_chart"] = _signin_chart(request.user)
    return render(request, "web/home.html", context)


SIGNIN_CHART_DAYS = 14


def _signin_chart(viewer: Any) -> dict[str, Any]:
    """Sign-ins, failures and refusals per day: an administrator's first glance at guessing."""
    series = [
        ("auth.login", _("Sign-ins")),
        ("auth.login_failed", _("Failed sign-ins")),
        ("auth.login_throttled", _("Refused (throttled)")),
    ]
    today = timezone.localdate()
    counts = audit_daily_counts(
        user=viewer, actions=[action for action, _label in series], days=SIGNIN_CHART_DAYS, today=today
    )
    days = [today - timedelta(days=SIGNIN_CHART_DAYS - 1 - offset) for offset in range(SIGNIN_CHART_DAYS)]
    return {
        "title": str(_("Sign-in activity, last %(days)d days") % {"days": SIGNIN_CHART_DAYS}),
        "days": [day.strftime("%m-%d") for day in days],
        "series": [
            {"name": str(label), "action": action, "data": counts[action]} for action, label in series
        ],
    }


@require_POST
def language_switch(request: HttpRequest) -> HttpResponse:
    """Django's ``set_language`` (cookie and redirect), and for a signed-in user also their profile.

    Keeping the choice on the user makes it follow them to other browsers: sign-in applies it.
    """
    response = set_language(request)
    language = request.POST.get("language", "")
    user = request.user
    if (
        isinstance(user, User)
        and user.is_active
        and language in dict(settings.LANGUAGES)
        and user.language != language
    ):
        user_update(actor=user, user=user, language=language)
    return response
