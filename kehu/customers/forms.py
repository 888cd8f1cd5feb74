"""Web forms for customer records: they parse input into the services' data, nothing more.

Validation is the services' (``clean_customer``), so the page, the API and the CLI refuse the
same input with the same words; these forms only shape the fields and map the refusals back
onto the inputs ("phones.0.number" -> the first phone's box).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django import forms
from django.http import QueryDict
from django.utils.translation import gettext_lazy as _

from kehu.accounts import selectors as account_selectors
from kehu.accounts.models import Department, User
from kehu.core.errors import DomainError
from kehu.customers.models import (
    Customer,
    CustomFieldDefinition,
    CustomFieldKind,
    Gender,
    PhoneKind,
    Source,
    Status,
)
from kehu.customers.selectors import ORDERINGS, CustomerFilters
from kehu.customers.services import LIST_COLUMNS
from kehu.web.forms import TablerForm

BLANK_ROWS = {"phones": 1, "emails": 1, "addresses": 1}
ROW_FIELDS = {
    "phones": ("number", "kind", "label"),
    "emails": ("address", "label"),
    "addresses": ("province", "city", "district", "street", "postcode", "label"),
}
# The part of a row that says it is filled in; a row without it is skipped, not refused.
ROW_KEYS = {
    "phones": ("number",),
    "emails": ("address",),
    "addresses": ("province", "city", "district", "street", "postcode"),
}
MAX_ROWS = 10
# Service field names that differ from the form's inputs.
FIELD_NAMES = {"owner_id": "owner", "department_id": "department", "lunar_birthday": "lunar_month"}
DEFAULT_COLUMNS = ("code", "name", "phone", "tags", "owner", "department", "created_at")
BOOLEAN_CHOICES = [("", "—"), ("true", _("Yes")), ("false", _("No"))]
POOL = "pool"


def column_labels(definitions: list[CustomFieldDefinition]) -> dict[str, Any]:
    labels: dict[str, Any] = {
        "code": _("Code"),
        "name": _("Name"),
        "phone": _("Phone"),
        "gender": _("Gender"),
        "birthday": _("Birthday"),
        "tags": _("Tags"),
        "owner": _("Owner"),
        "department": _("Department"),
        "source": _("Source"),
        "status": _("Status"),
        "created_at": _("Created"),
    }
    ordered = {column: labels[column] for column in LIST_COLUMNS}
    ordered.update({f"cf:{definition.key}": definition.label for definition in definitions})
    return ordered


def owner_choices(viewer: User, *, current: User | None = None) -> list[tuple[str, str]]:
    """Users the viewer may hand a customer to: those they can see, else themselves."""
    users = list(account_selectors.user_list(user=viewer).filter(is_active=True).order_by("username")[:500])
    if not any(user.pk == viewer.pk for user in users):
        users.insert(0, viewer)
    if current is not None and not any(user.pk == current.pk for user in users):
        users.append(current)
    return [(str(user.pk), str(user)) for user in users]


def department_choices(viewer: User, *, current: Department | None = None) -> list[tuple[str, str]]:
    departments = list(account_selectors.department_list(user=viewer))
    known = {department.pk for department in departments}
    for extra in (viewer.department, current):
        if extra is not None and extra.pk not in known:
            departments.append(extra)
            known.add(extra.pk)
    return [(str(department.pk), f"{'— ' * department.depth}{department.name}") for department in departments]


def style_widgets(form: forms.Form) -> None:
    """Tabler's classes on fields added after ``TablerForm.__init__`` styled the declared ones."""
    for field in form.fields.values():
        widget = field.widget
        if "class" in widget.attrs:
            continue
        if isinstance(widget, forms.CheckboxSelectMultiple | forms.CheckboxInput | forms.RadioSelect):
            widget.attrs["class"] = "form-check-input"
        elif isinstance(widget, forms.Select):
            widget.attrs["class"] = "form-select"
        else:
            widget.attrs["class"] = "form-control"


def _custom_form_field(definition: CustomFieldDefinition, *, for_filter: bool) -> forms.Field:
    common: dict[str, Any] = {"label": definition.label, "required": False, "help_text": definition.help_text}
    choices = [(choice["value"], choice.get("label") or choice["value"]) for choice in definition.choices]
    kind = definition.kind
    if kind == CustomFieldKind.DATE:
        return forms.CharField(widget=forms.DateInput(attrs={"type": "date"}), **common)
    if kind == CustomFieldKind.NUMBER:
        return forms.CharField(widget=forms.TextInput(attrs={"inputmode": "decimal"}), **common)
    if kind == CustomFieldKind.BOOLEAN:
        return forms.ChoiceField(choices=BOOLEAN_CHOICES, **common)
    if kind == CustomFieldKind.CHOICE or (kind == CustomFieldKind.MULTI_CHOICE and for_filter):
        return forms.ChoiceField(choices=[("", "—"), *choices], **common)
    if kind == CustomFieldKind.MULTI_CHOICE:
        return forms.MultipleChoiceField(choices=choices, widget=forms.CheckboxSelectMultiple, **common)
    return forms.CharField(max_length=500, **common)


# --- the record ----------------------------------------------------------------------------------
class CustomerForm(TablerForm):
    """Every field of a customer, phones/emails/addresses as numbered rows ("phones-0-number")."""

    name = forms.CharField(label=_("Name"), max_length=200, required=False)
    gender = forms.ChoiceField(label=_("Gender"), choices=Gender.choices, required=False)
    birthday = forms.CharField(
        label=_("Birthday"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    lunar_month = forms.ChoiceField(
        label=_("Lunar birthday: month"),
        required=False,
        choices=[("", "—"), *[(str(month), str(month)) for month in range(1, 13)]],
    )
    lunar_day = forms.ChoiceField(
        label=_("Lunar birthday: day"),
        required=False,
        choices=[("", "—"), *[(str(day), str(day)) for day in range(1, 31)]],
    )
    lunar_leap = forms.BooleanField(label=_("Leap month"), required=False)
    id_number = forms.CharField(label=_("ID number"), max_length=40, required=False)
    source = forms.ChoiceField(label=_("Source"), choices=[("", "—"), *Source.choices], required=False)
    external_id = forms.CharField(label=_("External id"), max_length=100, required=False)
    status = forms.ChoiceField(label=_("Status"), choices=Status.choices, required=False)
    tags = forms.CharField(
        label=_("Tags"),
        required=False,
        help_text=_("Separate tags with commas."),
        max_length=3000,
        widget=forms.TextInput(attrs={"list": "customer-tag-names"}),
    )
    owner = forms.ChoiceField(label=_("Owner"), required=False)
    department = forms.ChoiceField(label=_("Department"), required=False)
    notes = forms.CharField(label=_("Notes"), required=False, widget=forms.Textarea(attrs={"rows": 3}))
    version = forms.IntegerField(required=False, widget=forms.HiddenInput)
    allow_duplicate = forms.BooleanField(label=_("Save anyway (they share it)"), required=False)

    def __init__(
        self,
        data: QueryDict | None = None,
        *,
        viewer: User,
        definitions: list[CustomFieldDefinition],
        customer: Customer | None = None,
        initial: Mapping[str, Any] | None = None,
        rows: Mapping[str, int] | None = None,
        keeps_sensitive: bool = False,
    ) -> None:
        super().__init__(data, initial=dict(initial or {}))
        self.customer = customer
        self.definitions = definitions
        # An editor who may not see sensitive values gets no inputs for them: the inputs would
        # have to hold the full values. The record keeps what it has.
        self.keeps_sensitive = keeps_sensitive
        if keeps_sensitive:
            del self.fields["id_number"]
        self.fields["owner"].choices = [  # type: ignore[attr-defined]
            ("", _("Public pool (no owner)")),
            *owner_choices(viewer, current=customer.owner if customer else None),
        ]
        self.fields["department"].choices = [  # type: ignore[attr-defined]
            ("", _("No department")),
            *department_choices(viewer, current=customer.department if customer else None),
        ]
        for definition in definitions:
            self.fields[f"cf_{definition.key}"] = _custom_form_field(definition, for_filter=False)
        self.row_counts = dict(rows) if rows is not None else self._posted_row_counts(data)
        if keeps_sensitive:
            self.row_counts = {}
        for kind, count in self.row_counts.items():
            for index in range(count):
                self.add_row_fields(kind, index)
        style_widgets(self)

    @staticmethod
    def _posted_row_counts(data: QueryDict | None) -> dict[str, int]:
        counts = dict(BLANK_ROWS)
        if data is None:
            return counts
        for kind in ROW_FIELDS:
            indexes = [
                int(key.split("-")[1])
                for key in data
                if key.startswith(f"{kind}-") and key.count("-") == 2 and key.split("-")[1].isdigit()
            ]
            counts[kind] = min(max(indexes) + 1, MAX_ROWS) if indexes else 0
        return counts

    def add_row_fields(self, kind: str, index: int) -> None:
        for part in ROW_FIELDS[kind]:
            name = f"{kind}-{index}-{part}"
            if part == "kind":
                field: forms.Field = forms.ChoiceField(
                    label=_("Type"), choices=[("", "—"), *PhoneKind.choices], required=False
                )
            else:
                field = forms.CharField(label=row_label(kind, part), required=False, max_length=300)
            self.fields[name] = field

    def enable_inline_validation(self, url: str) -> None:
        """Each input posts the whole form to ``url`` when it changes; the reply fills error slots."""
        for field in self.fields.values():
            field.widget.attrs["hx-post"] = url

    def row(self, kind: str, index: int) -> list[forms.BoundField]:
        return [self[f"{kind}-{index}-{part}"] for part in ROW_FIELDS[kind]]

    def rows(self, kind: str) -> list[list[forms.BoundField]]:
        return [self.row(kind, index) for index in range(self.row_counts.get(kind, 0))]

    def custom_fields(self) -> list[forms.BoundField]:
        return [self[f"cf_{definition.key}"] for definition in self.definitions]

    def service_data(self) -> dict[str, Any]:
        """The posted values in the services' shape; empty rows are left out."""
        self.is_valid()
        data = self.cleaned_data
        month, day = data.get("lunar_month"), data.get("lunar_day")
        result: dict[str, Any] = {
            "name": data.get("name", ""),
            "gender": data.get("gender", ""),
            "birthday": data.get("birthday") or None,
            "lunar_birthday": {"month": month, "day": day, "is_leap_month": bool(data.get("lunar_leap"))}
            if month or day
            else None,
            "id_number": data.get("id_number") or None,
            "external_id": data.get("external_id", ""),
            "status": data.get("status") or Status.ACTIVE,
            "tags": data.get("tags", ""),
            "owner_id": data.get("owner") or None,
            "department_id": data.get("department") or None,
            "notes": data.get("notes", ""),
            "custom_fields": {
                definition.key: data.get(f"cf_{definition.key}") or None for definition in self.definitions
            },
        }
        if data.get("source"):
            # "No source" is not one of the service's choices; leaving the key out keeps the record's.
            result["source"] = data["source"]
        if self.keeps_sensitive:
            del result["id_number"]
            return result
        for kind, parts in ROW_FIELDS.items():
            items = []
            for index in range(self.row_counts.get(kind, 0)):
                item = {part: (data.get(f"{kind}-{index}-{part}") or "").strip() for part in parts}
                if any(item[key] for key in ROW_KEYS[kind]):
                    items.append(item)
            result[kind] = items
        return result

    def service_field(self, key: str) -> str | None:
        """The input a service's field key belongs to ("phones.1.number" -> "phones-1-number")."""
        if key in FIELD_NAMES:
            return FIELD_NAMES[key]
        if key.startswith("custom_fields."):
            return f"cf_{key.split('.', 1)[1]}"
        parts = key.split(".")
        if parts[0] in ROW_FIELDS and len(parts) >= 2 and parts[1].isdigit():
            # The service numbers the rows it was given; empty rows were skipped before it.
            filled = self._filled_indexes(parts[0])
            position = int(parts[1])
            if position < len(filled):
                index = filled[position]
                part = parts[2] if len(parts) > 2 else ROW_KEYS[parts[0]][0]
                if part not in ROW_FIELDS[parts[0]]:
                    part = ROW_FIELDS[parts[0]][0]
                return f"{parts[0]}-{index}-{part}"
        if parts[0] in ROW_FIELDS:
            filled = self._filled_indexes(parts[0])
            return f"{parts[0]}-{filled[0] if filled else 0}-{ROW_FIELDS[parts[0]][0]}"
        return key if key in self.fields else None

    def _filled_indexes(self, kind: str) -> list[int]:
        data = getattr(self, "cleaned_data", {})
        return [
            index
            for index in range(self.row_counts.get(kind, 0))
            if any((data.get(f"{kind}-{index}-{key}") or "").strip() for key in ROW_KEYS[kind])
        ]

    def add_service_error(self, error: DomainError) -> None:
        """Each of the service's reasons beside its input; the summary on top when none fits."""
        placed = False
        for key, reasons in error.fields.items():
            name = self.service_field(key)
            for reason in reasons:
                if name is not None and name in self.fields:
                    self.add_error(name, reason)
                    placed = True
        if not placed:
            self.add_error(None, error.message)


def row_label(kind: str, part: str) -> Any:
    return {
        "number": _("Phone"),
        "address": _("Email"),
        "label": _("Label"),
        "province": _("Province"),
        "city": _("City"),
        "district": _("District"),
        "street": _("Street"),
        "postcode": _("Postcode"),
    }[part]


def initial_from_customer(
    customer: Customer, *, with_sensitive: bool
) -> tuple[dict[str, Any], dict[str, int]]:
    """The edit form's starting values; phones, emails, addresses and the ID number only ``with_sensitive``."""
    initial: dict[str, Any] = {
        "name": customer.name,
        "gender": customer.gender,
        "birthday": customer.birthday.isoformat() if customer.birthday else "",
        "lunar_month": str(customer.lunar_birthday_month or ""),
        "lunar_day": str(customer.lunar_birthday_day or ""),
        "lunar_leap": customer.lunar_birthday_is_leap_month,
        "id_number": customer.id_number or "",
        "source": customer.source,
        "external_id": customer.external_id,
        "status": customer.status,
        "tags": ", ".join(tag.name for tag in customer.tags.all()),
        "owner": str(customer.owner_id or ""),
        "department": str(customer.department_id or ""),
        "notes": customer.notes,
        "version": customer.version,
    }
    for key, value in customer.custom_fields.items():
        initial[f"cf_{key}"] = (
            value
            if isinstance(value, list)
            else ("true" if value is True else "false" if value is False else value)
        )
    if not with_sensitive:
        del initial["id_number"]
        return initial, {}
    phones = list(customer.phones.all())
    emails = list(customer.emails.all())
    addresses = list(customer.addresses.all())
    for index, phone in enumerate(phones):
        initial[f"phones-{index}-number"] = phone.number
        initial[f"phones-{index}-kind"] = phone.kind
        initial[f"phones-{index}-label"] = phone.label
    for index, email in enumerate(emails):
        initial[f"emails-{index}-address"] = email.address
        initial[f"emails-{index}-label"] = email.label
    for index, address in enumerate(addresses):
        for part in ROW_FIELDS["addresses"]:
            initial[f"addresses-{index}-{part}"] = getattr(address, part)
    sizes = {"phones": len(phones), "emails": len(emails), "addresses": len(addresses)}
    counts = {kind: size + BLANK_ROWS[kind] for kind, size in sizes.items()}
    return initial, counts


# --- the list ------------------------------------------------------------------------------------
class CustomerFilterForm(TablerForm):
    """The list's filters, sort and columns, all from the query string (shareable URLs)."""

    tags = forms.CharField(label=_("Tags"), required=False, help_text=_("All of these, comma-separated."))
    owner = forms.ChoiceField(label=_("Owner"), required=False)
    department = forms.ChoiceField(label=_("Department"), required=False)
    include_subdepartments = forms.BooleanField(label=_("Include sub-departments"), required=False)
    source = forms.ChoiceField(label=_("Source"), choices=[("", _("Any")), *Source.choices], required=False)
    gender = forms.ChoiceField(
        label=_("Gender"),
        choices=[("", _("Any")), ("none", _("Not given")), *Gender.choices[1:]],
        required=False,
    )
    status = forms.ChoiceField(label=_("Status"), choices=[("", _("Any")), *Status.choices], required=False)
    birthday_month = forms.TypedChoiceField(
        label=_("Birthday month"),
        coerce=int,
        empty_value=None,
        choices=[("", _("Any")), *[(str(month), str(month)) for month in range(1, 13)]],
        required=False,
    )
    birthday_within_days = forms.IntegerField(
        label=_("Birthday in the next N days"), min_value=0, max_value=366, required=False
    )
    created_from = forms.DateField(
        label=_("Created from"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    created_to = forms.DateField(
        label=_("Created to"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    ordering = forms.ChoiceField(label=_("Sort by"), required=False)
    columns = forms.MultipleChoiceField(
        label=_("Columns"), required=False, widget=forms.CheckboxSelectMultiple
    )

    def __init__(
        self, data: QueryDict | None, *, viewer: User, definitions: list[CustomFieldDefinition]
    ) -> None:
        super().__init__(data)
        self.definitions = definitions
        self.fields["owner"].choices = [  # type: ignore[attr-defined]
            ("", _("Anyone")),
            (POOL, _("Public pool (no owner)")),
            *owner_choices(viewer),
        ]
        self.fields["department"].choices = [("", _("Any")), *department_choices(viewer)]  # type: ignore[attr-defined]
        self.fields["ordering"].choices = ordering_choices()  # type: ignore[attr-defined]
        self.fields["columns"].choices = list(column_labels(definitions).items())  # type: ignore[attr-defined]
        for definition in definitions:
            if definition.kind in (CustomFieldKind.NUMBER, CustomFieldKind.DATE):
                for bound, label in (("min", _("from")), ("max", _("to"))):
                    field = _custom_form_field(definition, for_filter=True)
                    field.label = f"{definition.label} {label}"
                    self.fields[f"cf_{definition.key}_{bound}"] = field
            else:
                self.fields[f"cf_{definition.key}"] = _custom_form_field(definition, for_filter=True)
        style_widgets(self)

    def custom_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.fields if name.startswith("cf_")]

    def filters(self) -> CustomerFilters:
        if not self.is_valid():
            return CustomerFilters()
        data = self.cleaned_data
        owner = data.get("owner") or ""
        custom: dict[str, Any] = {}
        for definition in self.definitions:
            key = definition.key
            if definition.kind in (CustomFieldKind.NUMBER, CustomFieldKind.DATE):
                bounds = {bound: data.get(f"cf_{key}_{bound}") for bound in ("min", "max")}
                if any(bounds.values()):
                    custom[key] = {
                        bound: _typed_bound(definition, value) for bound, value in bounds.items() if value
                    }
            elif data.get(f"cf_{key}"):
                custom[key] = data[f"cf_{key}"]
        return CustomerFilters(
            tags=tuple(
                tag.strip() for tag in (data.get("tags") or "").replace("，", ",").split(",") if tag.strip()
            ),
            owner_id=int(owner) if owner.isdigit() else None,
            in_pool=owner == POOL,
            department_id=int(data["department"]) if data.get("department") else None,
            include_subdepartments=bool(data.get("include_subdepartments")),
            source=data.get("source") or "",
            gender=data.get("gender") or "",
            status=data.get("status") or "",
            birthday_month=data.get("birthday_month"),
            birthday_within_days=data.get("birthday_within_days"),
            created_from=data.get("created_from"),
            created_to=data.get("created_to"),
            custom=custom,
        )

    def chosen_ordering(self) -> str:
        if self.is_valid() and self.cleaned_data.get("ordering") in ORDERINGS:
            return str(self.cleaned_data["ordering"])
        return "-code"

    def chosen_columns(self) -> list[str]:
        if self.is_valid() and self.cleaned_data.get("columns"):
            return list(self.cleaned_data["columns"])
        return list(DEFAULT_COLUMNS)


def _typed_bound(definition: CustomFieldDefinition, value: str) -> Any:
    if definition.kind == CustomFieldKind.DATE:
        return value
    try:
        number = float(value.replace(",", ""))
    except ValueError:
        return value
    return int(number) if number.is_integer() else number


def ordering_choices() -> list[tuple[str, Any]]:
    labels = {
        "-code": _("Newest code first"),
        "code": _("Oldest code first"),
        "-created": _("Newest created first"),
        "created": _("Oldest created first"),
        "name": _("Name A→Z"),
        "-name": _("Name Z→A"),
    }
    return [(key, labels.get(key, key)) for key in ORDERINGS]


FILTER_KEYS_SKIPPED = frozenset({"after", "view", "ordering", "columns", "shown", "csrfmiddlewaretoken", "q"})


def saved_filters(query: QueryDict) -> dict[str, Any]:
    """The filter part of a list URL, as a saved view stores it (lists stay lists)."""
    return {
        key: values if len(values) > 1 else values[0]
        for key, values in query.lists()
        if key not in FILTER_KEYS_SKIPPED and any(values)
    }


class SavedViewForm(TablerForm):
    name = forms.CharField(label=_("View name"), max_length=60)
    is_default = forms.BooleanField(label=_("Open this view by default"), required=False)


# --- bulk actions ------------------------------------------------------------------------------
BULK_ACTIONS = [
    ("add_tags", _("Add tags")),
    ("remove_tags", _("Remove tags")),
    ("owner", _("Change owner")),
    ("department", _("Change department")),
]


class BulkForm(TablerForm):
    ids = forms.TypedMultipleChoiceField(coerce=int, required=False)
    action = forms.ChoiceField(label=_("Action"), choices=BULK_ACTIONS)
    tags = forms.CharField(label=_("Tags"), required=False)
    owner = forms.ChoiceField(label=_("New owner"), required=False)
    department = forms.ChoiceField(label=_("New department"), required=False)

    def __init__(self, data: QueryDict | None, *, viewer: User) -> None:
        super().__init__(data)
        self.fields["owner"].choices = [("", _("Public pool (no owner)")), *owner_choices(viewer)]  # type: ignore[attr-defined]
        self.fields["department"].choices = [("", _("No department")), *department_choices(viewer)]  # type: ignore[attr-defined]
        raw_ids = data.getlist("ids") if data is not None else []
        self.fields["ids"].choices = [(value, value) for value in raw_ids if value.isdigit()]  # type: ignore[attr-defined]

    def tag_names(self) -> list[str]:
        raw = self.cleaned_data.get("tags") or ""
        return [tag.strip() for tag in raw.replace("，", ",").split(",") if tag.strip()]


# --- custom field definitions -------------------------------------------------------------------
class CustomFieldDefinitionForm(TablerForm):
    key = forms.CharField(
        label=_("Key"),
        max_length=40,
        help_text=_("Lower-case letters, digits and underscores; cannot change later."),
    )
    label = forms.CharField(label=_("Label"), max_length=60)
    kind = forms.ChoiceField(label=_("Type"), choices=CustomFieldKind.choices)
    choices = forms.CharField(
        label=_("Choices"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("For choice fields: one per line, or value=label."),
    )
    is_required = forms.BooleanField(label=_("Required"), required=False)
    help_text = forms.CharField(label=_("Help text"), max_length=200, required=False)
    position = forms.IntegerField(label=_("Position"), min_value=0, max_value=32000, required=False)

    def __init__(self, *args: Any, editing: CustomFieldDefinition | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if editing is not None:
            # The key and type stay: stored values were checked against them.
            for name in ("key", "kind"):
                self.fields[name].required = False
                self.fields[name].disabled = True

    def parsed_choices(self) -> list[dict[str, str]]:
        choices = []
        for line in (
            (self.cleaned_data.get("choices") or "").replace("，", "\n").replace(",", "\n").splitlines()
        ):
            value, _separator, label = line.partition("=")
            if value.strip():
                choices.append({"value": value.strip(), "label": label.strip() or value.strip()})
        return choices


def choices_text(definition: CustomFieldDefinition) -> str:
    return "\n".join(
        f"{choice['value']}={choice['label']}"
        if choice.get("label") not in (None, "", choice["value"])
        else choice["value"]
        for choice in definition.choices
    )
