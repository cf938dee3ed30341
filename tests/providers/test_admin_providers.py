"""Providers in the admin: presets fill the protocol and URL; every change is audited."""

from __future__ import annotations

import pytest
from django.urls import reverse

from providers.choices import ProviderKind, WireProtocol
from providers.models import Provider
from tenants import config_version
from tenants.models import AuditLog
from tests.factories import ProviderFactory
from tests.tenants.admin_forms import changeform_data

ADD_URL = reverse("admin:providers_provider_add")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


def test_a_provider_added_without_protocol_or_url_takes_its_kinds_preset(
    staff_client, staff_user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            ADD_URL,
            {
                "name": "Anthropic",
                "slug": "anthropic",
                "kind": ProviderKind.ANTHROPIC,
                "options": "{}",
            },
        )

    assert response.status_code == 302, response.content.decode()[:2000]
    provider = Provider.objects.get(slug="anthropic")
    assert provider.protocol == WireProtocol.ANTHROPIC
    assert provider.base_url == "https://api.anthropic.com/v1"
    entry = AuditLog.objects.get(action="provider.created")
    assert (entry.actor, entry.target_id) == (staff_user, str(provider.pk))
    assert config_version.read_sync() != "0"


def test_a_custom_endpoint_needs_a_base_url(staff_client):
    response = staff_client.post(
        ADD_URL, {"name": "Mine", "slug": "mine", "kind": ProviderKind.CUSTOM, "options": "{}"}
    )

    assert response.status_code == 200
    assert "base_url" in response.context["adminform"].form.errors
    assert not Provider.objects.filter(slug="mine").exists()


def test_disabling_a_provider_is_audited(staff_client, staff_user):
    provider = ProviderFactory()
    url = reverse("admin:providers_provider_change", args=[provider.pk])
    data = changeform_data(staff_client.get(url), is_enabled=None)

    staff_client.post(url, data)

    entry = AuditLog.objects.get(action="provider.updated")
    assert entry.actor == staff_user
    assert entry.changes == {"is_enabled": [True, False]}
