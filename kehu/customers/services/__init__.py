"""Every write to customer records: one use case per function, one transaction each.

All surfaces (API, pages, CLI, jobs, imports) come through here, so validation, duplicate
checks, optimistic locking, field history, the timeline and the audit log are the same for
all of them.
"""

from kehu.customers.services._common import (
    BULK_LIMIT,
    RESOURCE,
    SENSITIVE_FIELDS,
    WRITABLE_FIELDS,
    BulkResult,
    CleanCustomer,
    DuplicateCustomer,
    StaleVersion,
    clean_customer,
    find_duplicates,
)
from kehu.customers.services.bulk_actions import customers_bulk_assign, customers_bulk_tag
from kehu.customers.services.custom_fields import (
    custom_field_create,
    custom_field_delete,
    custom_field_update,
)
from kehu.customers.services.records import (
    REVEALABLE,
    customer_create,
    customer_delete,
    customer_restore,
    customer_reveal,
    customer_update,
)
from kehu.customers.services.saved_views import LIST_COLUMNS, saved_view_delete, saved_view_save
from kehu.customers.services.timeline import timeline_event_add

__all__ = [
    "BULK_LIMIT",
    "LIST_COLUMNS",
    "RESOURCE",
    "REVEALABLE",
    "SENSITIVE_FIELDS",
    "WRITABLE_FIELDS",
    "BulkResult",
    "CleanCustomer",
    "DuplicateCustomer",
    "StaleVersion",
    "clean_customer",
    "custom_field_create",
    "custom_field_delete",
    "custom_field_update",
    "customer_create",
    "customer_delete",
    "customer_restore",
    "customer_reveal",
    "customer_update",
    "customers_bulk_assign",
    "customers_bulk_tag",
    "find_duplicates",
    "saved_view_delete",
    "saved_view_save",
    "timeline_event_add",
]
