"""Who a CLI verb acts as: the user named by ``--as``, or the first active administrator."""

from __future__ import annotations

from django.core.management.base import CommandError
from django.utils.translation import gettext as _

from kehu.accounts.models import User


def acting_user(username: str | None) -> User:
    if username:
        user = User.objects.filter(username__iexact=username, is_active=True).first()
        if user is None:
            raise CommandError(_("No active user named %(name)s.") % {"name": repr(username)})
        return user
    admin = User.objects.filter(is_superuser=True, is_active=True).order_by("pk").first()
    if admin is None:
        raise CommandError(_("No active administrator; create one (kehu createadmin) or pass --as USERNAME."))
    return admin
