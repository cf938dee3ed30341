"""Tenant pages of usage, mounted at /usage/ with the namespace "usage"."""

from django.urls import path
from django.views.generic import RedirectView

from usage import views

app_name = "usage"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="usage:dashboard"), name="index"),
    # Not at /usage/ itself: the navigation marks a section active by URL prefix, and
    # /usage/spending/ would light up the dashboard's tab too.
    path("dashboard/", views.dashboard, name="dashboard"),
    path("spending/", views.spending, name="spending"),
    path("spending/cap/", views.tenant_cap, name="tenant-cap"),
    path("spending/default-user-cap/", views.each_user_cap, name="each-user-cap"),
    path("spending/user-caps/", views.user_cap_add, name="user-cap-add"),
    path("spending/user-caps/<int:cap_id>/", views.user_cap_edit, name="user-cap-edit"),
    path(
        "spending/user-caps/<int:cap_id>/enabled/",
        views.user_cap_set_enabled,
        name="user-cap-set-enabled",
    ),
    path("spending/alerts/read/", views.alerts_read, name="alerts-read"),
]
