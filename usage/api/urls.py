from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from usage.api import views

app_name = "usage-api"

urlpatterns = [
    path("usage", views.UsageView.as_view(), name="usage"),
    path("usage/export.csv", views.UsageExportView.as_view(), name="usage-export"),
    path("credits", views.CreditsView.as_view(), name="credits"),
    path("limits", views.LimitsView.as_view(), name="limits"),
]

router = SimpleRouter(trailing_slash=False, use_regex_path=False)
router.register("spending-caps", views.SpendingCapViewSet, basename="spending-cap")
urlpatterns += router.urls
