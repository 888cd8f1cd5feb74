"""Admin-defined custom fields: create, change, retire."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils.translation import gettext as _

from kehu.accounts.models import User
from kehu.core.audit import audit_record
from kehu.core.errors import ValidationFailed
from kehu.core.permissions import ensure_permitted
from kehu.customers.models import (
    CustomFieldDefinition,
    CustomFieldKind,
)
from kehu.customers.validation import (
    Errors,
    clean_text,
)


def _clean_choices(kind: str, choices: Any) -> list[dict[str, str]]:
    if kind not in (CustomFieldKind.CHOICE, CustomFieldKind.MULTI_CHOICE):
        return []
    if isinstance(choices, str):
        choices = [part for part in choices.replace("，", ",").replace("\n", ",").split(",")]
    cleaned: list[dict[str, str]] = []
    for choice in choices or []:
        value = str(choice.get("value", "") if isinstance(choice, dict) else choice).strip()[:60]
        label = str(choice.get("label", "") if isinstance(choice, dict) else "").strip()[:60] or value
        if value and value not in [existing["value"] for existing in cleaned]:
            cleaned.append({"value": value, "label": label})
    if not cleaned:
        raise ValidationFailed.for_field(
            "choices", _("A choice field needs at least one choice."), label=_("Choices")
        )
    return cleaned


@transaction.atomic
def custom_field_create(
    *,
    actor: User | None,
    key: str,
    label: str,
    kind: str,
    choices: Any = None,
    is_required: bool = False,
    help_text: str = "",
    position: int = 0,
) -> CustomFieldDefinition:
    ensure_permitted(actor, "custom_fields.create")
    errors = Errors()
    key = key.strip().lower()
    if not key or not key.replace("_", "").isalnum() or not key.isascii() or key[0].isdigit():
        errors.add(
            "key",
            _("Use lower-case letters, digits and underscores, starting with a letter."),
            label=_("Key"),
        )
    elif CustomFieldDefinition.objects.filter(key=key).exists():
        errors.add("key", _("A custom field with this key exists."), label=_("Key"))
    if kind not in CustomFieldKind.values:
        errors.add("kind", _("“%(value)s” is not one of the choices.") % {"value": kind}, label=_("Type"))
    label = clean_text(label, max_length=60)[:60]
    if not label:
        errors.add("label", _("Enter a label."), label=_("Label"))
    errors.raise_if_any()
    definition = CustomFieldDefinition.objects.create(
        key=key,
        label=label,
        kind=kind,
        choices=_clean_choices(kind, choices),
        is_required=is_required,
        help_text=clean_text(help_text, max_length=200)[:200],
        position=position,
    )
    audit_record(
        actor=actor, action="custom_field.create", target=definition, after={"key": key, "kind": kind}
    )
    return definition


@transaction.atomic
def custom_field_update(
    *,
    actor: User | None,
    definition: CustomFieldDefinition,
    label: str | None = None,
    choices: Any = None,
    is_required: bool | None = None,
    help_text: str | None = None,
    position: int | None = None,
    is_active: bool | None = None,
) -> CustomFieldDefinition:
    """Change a definition; its key and type stay, because stored values were checked against them."""
    ensure_permitted(actor, "custom_fields.change")
    locked = CustomFieldDefinition.objects.select_for_update().get(pk=definition.pk)
    before = {
        "label": locked.label,
        "choices": locked.choices,
        "is_required": locked.is_required,
        "is_active": locked.is_active,
    }
    if label is not None:
        cleaned_label = clean_text(label, max_length=60)[:60]
        if not cleaned_label:
            raise ValidationFailed.for_field("label", _("Enter a label."), label=_("Label"))
        locked.label = cleaned_label
    if choices is not None:
        locked.choices = _clean_choices(locked.kind, choices)
    if is_required is not None:
        locked.is_required = is_required
    if help_text is not None:
        locked.help_text = clean_text(help_text, max_length=200)[:200]
    if position is not None:
        locked.position = position
    if is_active is not None:
        locked.is_active = is_active
    locked.save()
    after = {
        "label": locked.label,
        "choices": locked.choices,
        "is_required": locked.is_required,
        "is_active": locked.is_active,
    }
    audit_record(actor=actor, action="custom_field.update", target=locked, before=before, after=after)
    return locked


@transaction.atomic
def custom_field_delete(*, actor: User | None, definition: CustomFieldDefinition) -> None:
    """Retire a field: it disappears from forms and filters; stored values stay in the records."""
    ensure_permitted(actor, "custom_fields.delete")
    CustomFieldDefinition.objects.filter(pk=definition.pk).update(is_active=False)
    audit_record(actor=actor, action="custom_field.delete", target=definition)
