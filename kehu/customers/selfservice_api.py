"""API for self-service update links: POST /api/v1/customers/{code}/self-service-links."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from django.http import HttpResponse
from django.urls import reverse
from ninja import Path, Router, Schema, Status

from kehu.accounts.auth import AuthenticatedRequest
from kehu.core.permissions import ensure_permitted
from kehu.core.schemas import ERRORS_WRITE
from kehu.customers import selfservice
from kehu.customers.selectors import customer_get

router = Router(tags=["customers"])

CustomerCode = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9]{1,16}$", description="The customer code, e.g. C000123")
]


class SelfServiceLinkOut(Schema):
    url: str
    expires_at: datetime
    qr_svg: str


@router.post(
    "/customers/{code}/self-service-links",
    response={201: SelfServiceLinkOut, **ERRORS_WRITE},
    summary="Create a self-service link",
    description=(
        "A signed, single-use link the customer opens without signing in to correct their phones, "
        "emails, addresses and birthday and give or withdraw marketing consent. It expires after "
        "KEHU_SELF_SERVICE_LINK_HOURS and replaces any earlier unused link of the customer. The URL "
        "is returned only now (it is not stored), with a QR code as inline SVG. Needs customers.change "
        "and the customer in the caller's scope."
    ),
)
def create_self_service_link(
    request: AuthenticatedRequest, code: CustomerCode, response: HttpResponse
) -> Status[dict[str, Any]]:
    ensure_permitted(request.auth, "customers.change")
    customer = customer_get(request.auth, code)
    link, token = selfservice.link_create(actor=request.auth, customer=customer)
    url = request.build_absolute_uri(reverse("selfservice:public", args=[token]))
    response["Cache-Control"] = "no-store"
    return Status(201, {"url": url, "expires_at": link.expires_at, "qr_svg": selfservice.qr_svg(url)})
