"""Every write of the commerce app: the catalogue, orders and refunds."""

from kehu.commerce.services.orders import (
    LineInput,
    OrderResult,
    PaymentInput,
    PaymentsMismatch,
    Quote,
    order_create,
    order_quote,
)
from kehu.commerce.services.products import (
    CategoryExists,
    SkuTaken,
    category_create,
    product_create,
    product_update,
)
from kehu.commerce.services.refunds import (
    PointsAlreadySpent,
    RefundExceedsPaid,
    RefundLineInput,
    RefundResult,
    order_refund,
)

__all__ = [
    "CategoryExists",
    "LineInput",
    "OrderResult",
    "PaymentInput",
    "PaymentsMismatch",
    "PointsAlreadySpent",
    "Quote",
    "RefundExceedsPaid",
    "RefundLineInput",
    "RefundResult",
    "SkuTaken",
    "category_create",
    "order_create",
    "order_quote",
    "order_refund",
    "product_create",
    "product_update",
]
