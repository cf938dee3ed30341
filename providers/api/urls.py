from __future__ import annotations

from rest_framework.routers import SimpleRouter

from providers.api import views

app_name = "providers-api"

router = SimpleRouter(trailing_slash=False, use_regex_path=False)
router.register("provider-keys", views.ProviderKeyViewSet, basename="provider-key")
router.register("staff/providers", views.StaffProviderViewSet, basename="staff-provider")

urlpatterns = router.urls
