"""The customer pages, one module per page group; urls.py routes to the names below."""

from kehu.customers.views.detail import (
    customer_delete,
    customer_detail,
    customer_reveal,
    customer_timeline,
)
from kehu.customers.views.editing import (
    customer_create,
    customer_edit,
    customer_form_row,
    customer_validate,
    customer_validate_existing,
)
from kehu.customers.views.fields import (
    field_create,
    field_edit,
    field_list,
    field_retire,
)
from kehu.customers.views.listing import (
    customer_bulk,
    customer_list,
    customer_search_results,
    saved_view_default,
    saved_view_delete,
    saved_view_save,
)

__all__ = [
    "customer_bulk",
    "customer_create",
    "customer_delete",
    "customer_detail",
    "customer_edit",
    "customer_form_row",
    "customer_list",
    "customer_reveal",
    "customer_search_results",
    "customer_timeline",
    "customer_validate",
    "customer_validate_existing",
    "field_create",
    "field_edit",
    "field_list",
    "field_retire",
    "saved_view_default",
    "saved_view_delete",
    "saved_view_save",
]
