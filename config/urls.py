from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from config import health, metrics
from tenants.login import ThrottledAdminAuthenticationForm

admin.site.site_header = "Switchyard administration"
admin.site.site_title = "Switchyard"
admin.site.index_title = "Operations"
admin.site.login_form = ThrottledAdminAuthenticationForm  # failed log-ins throttled

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("api/v1/", include("usage.api.urls")),
    path("api/v1/", include("providers.api.urls")),
    path("api/v1/", include("routing.api.urls")),
    path("api/v1/", include("tenants.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its start-up script from a URL: the CSP runs no inline script.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("keys/", include(("providers.urls", "providers"))),
    path("", include(("tenants.page_urls", "tenants"))),
    path("", include("routing.urls")),
    path("usage/", include(("usage.urls", "usage"))),
    path("", include("tenants.urls")),
]
