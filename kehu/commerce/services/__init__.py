"""Every write of the commerce app: the catalogue, orders and refunds."""

from kehu.commerce.services.orders import (
    LineInput,
    OrderResult,
    PaymentInput,
    PaymentsMismatch,
    order_create,
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
    "RefundExceedsPaid",
    "RefundLineInput",
    "RefundResult",
    "SkuTaken",
    "category_create",
    "order_create",
    "order_refund",
    "product_create",
    "product_update",
]
