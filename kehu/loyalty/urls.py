from django.urls import path

from kehu.loyalty import views

app_name = "loyalty"

urlpatterns = [
    path("cards/", views.card_list, name="card_list"),
    path("cards/new/", views.card_issue, name="card_issue"),
    path("cards/new/customer/", views.customer_lookup, name="customer_lookup"),
    path("cards/new/price/", views.card_type_price, name="card_type_price"),
    path("cards/customer/<str:code>/", views.customer_cards, name="customer_cards"),
    path("cards/<str:number>/", views.card_detail, name="card_detail"),
    path("cards/<str:number>/ledger/", views.card_ledger, name="card_ledger"),
    path("cards/<str:number>/<slug:action>/", views.card_action, name="card_action"),
    path("card-types/", views.card_type_list, name="card_type_list"),
    path("card-types/new/", views.card_type_create, name="card_type_create"),
    path("card-types/<int:pk>/", views.card_type_edit, name="card_type_edit"),
    path("card-types/<int:pk>/bonus-rules/", views.bonus_rule_add, name="bonus_rule_add"),
    path(
        "card-types/<int:pk>/bonus-rules/<int:rule_id>/delete/",
        views.bonus_rule_remove,
        name="bonus_rule_remove",
    ),
    path("card-types/<int:pk>/tier-discounts/", views.tier_discount_set, name="tier_discount_set"),
    path("tiers/new/", views.tier_create, name="tier_create"),
    path("tiers/<int:pk>/", views.tier_edit, name="tier_edit"),
    path("liabilities/", views.ledger_report, name="ledger_report"),
    path("liabilities/reconcile/", views.ledger_reconcile, name="ledger_reconcile"),
]
