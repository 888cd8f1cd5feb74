"""The 360 page's "record an interaction" form."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from kehu.engagement.models import InteractionDirection, InteractionKind
from kehu.engagement.services import CONTENT_MAX, SUBJECT_MAX


class InteractionForm(forms.Form):
    kind = forms.ChoiceField(label=_("Kind"), choices=InteractionKind.choices, initial=InteractionKind.CALL)
    direction = forms.ChoiceField(
        label=_("Direction"), choices=[("", "—"), *InteractionDirection.choices], required=False
    )
    occurred_at = forms.DateTimeField(
        label=_("Time"),
        required=False,
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text=_("Empty: now."),
    )
    subject = forms.CharField(label=_("Subject"), max_length=SUBJECT_MAX, required=False)
    content = forms.CharField(
        label=_("Content"), max_length=CONTENT_MAX, required=False, widget=forms.Textarea(attrs={"rows": 3})
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            widget = field.widget
            widget.attrs["class"] = "form-select" if isinstance(widget, forms.Select) else "form-control"
