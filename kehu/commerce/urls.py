from django.urls import path

from kehu.commerce import views

app_name = "commerce"

urlpatterns = [
    path("pos/", views.pos, name="pos"),
    path("pos/who/", views.pos_lookup, name="pos_lookup"),
    path("pos/summary/", views.pos_summary, name="pos_summary"),
    path("pos/search/", views.pos_search, name="pos_search"),
    path("pos/line/", views.pos_line, name="pos_line"),
    path("pos/line/remove/", views.pos_line_remove, name="pos_line_remove"),
    path("orders/", views.order_list, name="order_list"),
    path("orders/customer/<str:code>/", views.customer_orders, name="customer_orders"),
    path("orders/<str:number>/", views.order_detail, name="order_detail"),
    path("orders/<str:number>/refund/", views.order_refund, name="order_refund"),
    path("products/", views.product_list, name="product_list"),
    path("products/new/", views.product_create, name="product_create"),
    path("products/categories/", views.category_create, name="category_create"),
    path("products/<int:pk>/", views.product_edit, name="product_edit"),
]
