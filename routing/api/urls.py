from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from routing.api import views

app_name = "routing-api"

router = SimpleRouter(trailing_slash=False, use_regex_path=False)
router.register(
    "staff/catalog-models", views.StaffCatalogModelViewSet, basename="staff-catalog-model"
)
router.register(
    "staff/routing-policies", views.StaffRoutingPolicyViewSet, basename="staff-routing-policy"
)

urlpatterns = [
    path("settings", views.SettingsView.as_view(), name="settings"),
    path("settings/me", views.MySettingsView.as_view(), name="my-settings"),
    *router.urls,
]
