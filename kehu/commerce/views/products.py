"""The product catalogue: list, categories, create and edit."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from kehu.commerce import selectors, services
from kehu.commerce.forms import CategoryForm, ProductFilterForm, ProductForm
from kehu.commerce.views._common import PAGE_SIZE
from kehu.core.errors import DomainError, NotFound, ValidationFailed
from kehu.core.money import fen_to_str
from kehu.loyalty.views._common import refuse_if_forbidden
from kehu.web.shortcuts import add_domain_error, require_permission


@login_required
@require_GET
def product_list(request: HttpRequest) -> HttpResponse:
    viewer = require_permission(request, "products.view")
    form = ProductFilterForm(request.GET or None)
    filters = selectors.ProductFilters()
    if form.is_valid():
        category = form.cleaned_data["category"]
        filters = selectors.ProductFilters(
            category_id=category.pk if category is not None else None,
            active_only=not form.cleaned_data["inactive"],
            query=form.cleaned_data["q"],
        )
    try:
        page = selectors.product_list(
            filters=filters, after=request.GET.get("after") or None, limit=PAGE_SIZE
        )
    except ValidationFailed as error:
        raise Http404 from error
    next_url = ""
    if page.next_cursor:
        query = request.GET.copy()
        query["after"] = page.next_cursor
        next_url = f"{reverse('commerce:product_list')}?{query.urlencode()}"
    context = {
        "form": form if form.is_bound else ProductFilterForm(),
        "products": page.items,
        "next_url": next_url,
        "categories": selectors.product_categories(),
        "category_form": CategoryForm(),
        "may_create": viewer.has_perm("products.create"),
    }
    return render(request, "commerce/product_list.html", context)


@login_required
@require_POST
def category_create(request: HttpRequest) -> HttpResponse:
    viewer = require_permission(request, "products.create")
    form = CategoryForm(request.POST)
    if form.is_valid():
        try:
            category = services.category_create(
                actor=viewer, name=form.cleaned_data["name"], parent=form.cleaned_data["parent"]
            )
        except DomainError as error:
            refuse_if_forbidden(error)
            messages.error(request, error.message)
        else:
            messages.success(request, _("Category %(name)s was created.") % {"name": category.name})
    else:
        messages.error(request, _("Give the category a name."))
    return redirect("commerce:product_list")


@login_required
@require_http_methods(["GET", "POST"])
def product_create(request: HttpRequest) -> HttpResponse:
    viewer = require_permission(request, "products.create")
    form = ProductForm(
        request.POST if request.method == "POST" else None, initial={"earns_points": True, "is_active": True}
    )
    status = 200
    if request.method == "POST":
        status = 422
        if form.is_valid():
            try:
                product = services.product_create(actor=viewer, data=form.service_data())
            except DomainError as error:
                refuse_if_forbidden(error)
                add_domain_error(form, error, field_map=ProductForm.FIELD_MAP)
                status = error.status
            else:
                messages.success(request, _("Product %(name)s was created.") % {"name": product.name})
                return redirect("commerce:product_list")
    return render(request, "commerce/product_form.html", {"form": form, "product": None}, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def product_edit(request: HttpRequest, pk: int) -> HttpResponse:
    viewer = require_permission(request, "products.view")
    try:
        product = selectors.product_get(pk)
    except NotFound as error:
        raise Http404 from error
    status = 200
    if request.method == "POST":
        viewer = require_permission(request, "products.change")
        form = ProductForm(request.POST)
        status = 422
        if form.is_valid():
            try:
                services.product_update(actor=viewer, product=product, data=form.service_data())
            except DomainError as error:
                refuse_if_forbidden(error)
                add_domain_error(form, error, field_map=ProductForm.FIELD_MAP)
                status = error.status
            else:
                messages.success(request, _("Changes to %(name)s were saved.") % {"name": product.name})
                return redirect("commerce:product_list")
    else:
        form = ProductForm(
            initial={
                "sku": product.sku,
                "name": product.name,
                "category": product.category_id,
                "price": fen_to_str(product.price_fen),
                "earns_points": product.earns_points,
                "is_active": product.is_active,
            }
        )
    return render(request, "commerce/product_form.html", {"form": form, "product": product}, status=status)
