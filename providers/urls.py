"""Tenant pages of providers, mounted at /keys/ with the namespace "providers"."""

from django.urls import path

from providers import views

app_name = "providers"

urlpatterns = [
    path("", views.key_list, name="key-list"),
    path("add/", views.key_add, name="key-add"),
    path("<int:key_id>/enabled/", views.key_set_enabled, name="key-set-enabled"),
    path("<int:key_id>/replace/", views.key_replace, name="key-replace"),
    path("<int:key_id>/delete/", views.key_delete, name="key-delete"),
]
