from django.urls import path

from kehu.customers import views

app_name = "customers"

urlpatterns = [
    path("", views.customer_list, name="list"),
    path("search/", views.customer_search_results, name="search"),
    path("new/", views.customer_create, name="create"),
    path("validate/", views.customer_validate, name="validate"),
    path("form-row/", views.customer_form_row, name="form_row"),
    path("bulk/", views.customer_bulk, name="bulk"),
    path("views/", views.saved_view_save, name="view_save"),
    path("views/<int:view_id>/delete/", views.saved_view_delete, name="view_delete"),
    path("views/<int:view_id>/default/", views.saved_view_default, name="view_default"),
    path("fields/", views.field_list, name="field_list"),
    path("fields/new/", views.field_create, name="field_create"),
    path("fields/<int:definition_id>/", views.field_edit, name="field_edit"),
    path("fields/<int:definition_id>/retire/", views.field_retire, name="field_retire"),
    path("<str:code>/", views.customer_detail, name="detail"),
    path("<str:code>/edit/", views.customer_edit, name="edit"),
    path("<str:code>/validate/", views.customer_validate_existing, name="validate_existing"),
    path("<str:code>/reveal/", views.customer_reveal, name="reveal"),
    path("<str:code>/timeline/", views.customer_timeline, name="timeline"),
    path("<str:code>/delete/", views.customer_delete, name="delete"),
]
