from django.urls import path

from kehu.engagement import views

app_name = "engagement"

urlpatterns = [
    path(
        "interactions/customer/<str:code>/",
        views.customer_interactions,
        name="customer_interactions",
    ),
    path(
        "interactions/customer/<str:code>/new/",
        views.interaction_create,
        name="interaction_create",
    ),
]
