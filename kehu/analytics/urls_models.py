from django.urls import URLPattern, path

from kehu.analytics.views.models import model_churn_train_view, model_clv_fit_view, model_report_view

urlpatterns: list[URLPattern] = [
    path("models/", model_report_view, name="model_report"),
    path("models/clv/fit/", model_clv_fit_view, name="model_clv_fit"),
    path("models/churn/train/", model_churn_train_view, name="model_churn_train"),
]
