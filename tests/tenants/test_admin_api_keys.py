"""Service API keys in the admin: created through the service, shown once, revoked not deleted."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from tenants.models import AuditLog, TenantAPIKey
from tests.factories import EndUserFactory, TenantAPIKeyFactory

ADD_URL = reverse("admin:tenants_tenantapikey_add")
LIST_URL = reverse("admin:tenants_tenantapikey_changelist")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


def test_a_key_created_in_the_admin_is_shown_once_and_stored_as_its_hash(
    staff_client, staff_user, tenant
):
    response = staff_client.post(
        ADD_URL,
        {"tenant": tenant.pk, "name": "rag backend", "scopes": ["completions", "models"]},
        follow=True,
    )

    key = TenantAPIKey.objects.get(tenant=tenant)
    shown = [str(m) for m in response.context["messages"]]
    raw = next(re.search(r"sy-[\w-]+", m).group(0) for m in shown if "sy-" in m)
    assert key.matches(raw)
    assert key.scopes == ["completions", "models"]
    assert key.created_by == staff_user
    entry = AuditLog.objects.get(action="api_key.created")
    assert (entry.actor, entry.tenant) == (staff_user, tenant)
    assert raw not in str(entry.changes)
    # Shown once: the change page and the list never carry it, nor its hash.
    for url in (LIST_URL, reverse("admin:tenants_tenantapikey_change", args=[key.pk])):
        html = staff_client.get(url).content.decode()
        assert raw not in html
        assert key.key_hash not in html


def test_an_end_user_of_another_tenant_cannot_be_bound(staff_client, tenant, other_tenant):
    stranger = EndUserFactory(tenant=other_tenant)

    response = staff_client.post(
        ADD_URL,
        {"tenant": tenant.pk, "name": "svc", "scopes": ["completions"], "end_user": stranger.pk},
    )

    assert response.status_code == 200
    assert "end_user" in response.context["adminform"].form.errors
    assert not TenantAPIKey.objects.exists()


def test_revoking_keys_goes_through_the_service(staff_client, staff_user, tenant):
    keys = TenantAPIKeyFactory.create_batch(2, tenant=tenant)

    staff_client.post(LIST_URL, {"action": "revoke", "_selected_action": [k.pk for k in keys]})

    assert not TenantAPIKey.objects.filter(revoked_at__isnull=True).exists()
    assert AuditLog.objects.filter(action="api_key.revoked", actor=staff_user).count() == 2


def test_api_keys_cannot_be_deleted_in_the_admin(staff_client, tenant):
    key = TenantAPIKeyFactory(tenant=tenant)

    response = staff_client.get(reverse("admin:tenants_tenantapikey_delete", args=[key.pk]))

    assert response.status_code == 403
