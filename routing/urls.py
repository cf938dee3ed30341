from django.urls import path

from routing import views

app_name = "routing"

urlpatterns = [
    path("power-level/", views.power_level, name="settings"),
    path("power-level/tenant/", views.save_tenant_settings, name="settings-tenant"),
    path("power-level/mine/", views.save_my_settings, name="settings-mine"),
    path("playground/", views.playground, name="playground"),
]
