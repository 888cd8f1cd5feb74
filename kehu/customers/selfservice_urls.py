"""URLs of the self-service update: the customer's public page and the staff pages.

Included before the customer pages: "/customers/self-service/" must not be read as a customer code.
"""

from django.urls import path

from kehu.customers import selfservice_views as views

app_name = "selfservice"

urlpatterns = [
    path("s/<str:token>/", views.public_page, name="public"),
    path("s/<str:token>/done/", views.public_done, name="done"),
    path("customers/self-service/", views.review_queue, name="review_queue"),
    path(
        "customers/self-service/<int:submission_id>/approve/",
        views.submission_approve,
        name="submission_approve",
    ),
    path(
        "customers/self-service/<int:submission_id>/reject/",
        views.submission_reject,
        name="submission_reject",
    ),
    path("customers/<str:code>/self-service-link/", views.link_create, name="link_create"),
]
