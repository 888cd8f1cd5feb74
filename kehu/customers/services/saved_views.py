"""Users' saved list views."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.db import transaction
from django.utils.translation import gettext as _

from kehu.accounts.models import User
from kehu.core.errors import NotFound, ValidationFailed
from kehu.core.permissions import ensure_permitted
from kehu.customers.models import (
    SavedView,
)
from kehu.customers.validation import (
    clean_text,
)

LIST_COLUMNS = (
    "code",
    "name",
    "phone",
    "gender",
    "birthday",
    "tags",
    "owner",
    "department",
    "source",
    "status",
    "created_at",
)


@transaction.atomic
def saved_view_save(
    *,
    actor: User,
    name: str,
    filters: Mapping[str, Any],
    columns: Sequence[str] = (),
    ordering: str = "",
    is_default: bool = False,
) -> SavedView:
    """Save (or replace, by name) one of the actor's own list views."""
    ensure_permitted(actor, "customers.view")
    name = clean_text(name, max_length=60)[:60]
    if not name:
        raise ValidationFailed.for_field("name", _("Give the view a name."), label=_("Name"))
    unknown = [
        column for column in columns if column not in LIST_COLUMNS and not str(column).startswith("cf:")
    ]
    if unknown:
        raise ValidationFailed.for_field("columns", _("Unknown column: %(column)s") % {"column": unknown[0]})
    if is_default:
        SavedView.objects.filter(user=actor, is_default=True).exclude(name=name).update(is_default=False)
    view, _created = SavedView.objects.update_or_create(
        user=actor,
        name=name,
        defaults={
            "filters": dict(filters),
            "columns": list(columns),
            "ordering": ordering,
            "is_default": is_default,
        },
    )
    return view


@transaction.atomic
def saved_view_delete(*, actor: User, view: SavedView) -> None:
    if view.user_id != actor.pk:
        raise NotFound(_("Not found."))
    view.delete()
