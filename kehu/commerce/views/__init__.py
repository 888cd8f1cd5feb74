"""Sales pages: the till (POS), orders and refunds, the product catalogue.

Thin over the commerce services: the till's running total and the refund preview ask the
same services that record the sale or the refund, so the numbers shown are the numbers
booked. The refund preview runs ``order_refund`` inside a transaction that is always rolled
back (nothing is kept: no refund, no ledger entry, no signal).
"""

from kehu.commerce.views.orders import customer_orders, order_detail, order_list, order_refund
from kehu.commerce.views.pos import pos, pos_line, pos_line_remove, pos_lookup, pos_search, pos_summary
from kehu.commerce.views.products import category_create, product_create, product_edit, product_list

__all__ = [
    "category_create",
    "customer_orders",
    "order_detail",
    "order_list",
    "order_refund",
    "pos",
    "pos_line",
    "pos_line_remove",
    "pos_lookup",
    "pos_search",
    "pos_summary",
    "product_create",
    "product_edit",
    "product_list",
]
