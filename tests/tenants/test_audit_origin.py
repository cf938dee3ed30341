"""Where a change came from: the client address (X-Forwarded-For believed only from trusted
proxies) and the user agent reach the entry through the real request path, WSGI and ASGI."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.test import AsyncClient
from django.urls import reverse

from tenants import audit
from tenants.models import AuditLog, TenantAPIKey
from tests.factories import (
    MembershipFactory,
    TenantAPIKeyFactory,
    TenantFactory,
    ensure_default_data,
)
from tests.tenants.audit_helpers import browser, member_browser, recorded


def revoke(client, key: TenantAPIKey):
    return client.post(reverse("tenants:api-key-revoke", args=[key.pk]))


def test_behind_a_trusted_proxy_the_forwarded_client_is_recorded(settings, tenant):
    settings.SWITCHYARD_TRUSTED_PROXIES = ["10.0.0.0/8"]
    owner = MembershipFactory(tenant=tenant, role="owner").user
    client = browser(owner)
    key = TenantAPIKeyFactory(tenant=tenant)

    client.post(
        reverse("tenants:api-key-revoke", args=[key.pk]),
        REMOTE_ADDR="10.1.2.3",
        HTTP_X_FORWARDED_FOR="198.51.100.23",
    )

    assert AuditLog.objects.get(action="api_key.revoked").ip_address == "198.51.100.23"


def test_an_ipv6_client_is_recorded_as_such(tenant):
    client, _ = member_browser(tenant, "owner")
    key = TenantAPIKeyFactory(tenant=tenant)

    client.post(reverse("tenants:api-key-revoke", args=[key.pk]), REMOTE_ADDR="2001:db8::5")

    assert AuditLog.objects.get(action="api_key.revoked").ip_address == "2001:db8::5"


def test_the_origin_does_not_outlive_its_request(tenant):
    client, _ = member_browser(tenant, "owner")
    revoke(client, TenantAPIKeyFactory(tenant=tenant))

    later = audit.record(action="tenant.noted", tenant=tenant)

    assert audit.current_origin() is None
    assert (later.ip_address, later.user_agent) == (None, "")


def test_an_explicit_address_wins_over_the_requests(tenant):
    with audit.acting_from(audit.Origin("198.51.100.1", "ua")):
        entry = audit.record(action="tenant.noted", tenant=tenant, ip_address="192.0.2.9")

    assert (entry.ip_address, entry.user_agent) == ("192.0.2.9", "")


class AsyncClientFrom(AsyncClient):
    """Django's AsyncClient always connects from 127.0.0.1; this one from ASGI_PEER."""

    def _base_scope(self, **request):
        return {**super()._base_scope(**request), "client": [ASGI_PEER, 5555]}


ASGI_PEER = "192.0.2.44"


@pytest.mark.django_db(transaction=True)
async def test_under_asgi_the_address_and_user_agent_are_recorded_too():
    def world():
        ensure_default_data()
        tenant = TenantFactory(slug="asgi-tenant")
        owner = MembershipFactory(tenant=tenant, role="owner").user
        return tenant, owner, TenantAPIKeyFactory(tenant=tenant)

    tenant, owner, key = await sync_to_async(world)()
    client = AsyncClientFrom()
    await client.aforce_login(owner)

    try:
        response = await client.post(
            reverse("tenants:api-key-revoke", args=[key.pk]), headers={"user-agent": "asgi-test/2"}
        )
        entry = await AuditLog.objects.aget(action="api_key.revoked")
    finally:
        # The view's thread holds a connection; the database cannot be dropped under it.
        await sync_to_async(connections.close_all)()

    assert response.status_code == 302
    assert (entry.tenant_id, entry.ip_address, entry.user_agent) == (
        tenant.pk,
        ASGI_PEER,
        "asgi-test/2",
    )


def test_recorded_helper_sanity(tenant):
    """The inventory's assertion fails when the address is not the client's."""
    client, owner = member_browser(tenant, "owner")
    revoke(client, TenantAPIKeyFactory(tenant=tenant))

    recorded("api_key.revoked", tenant=tenant, actor=owner)
    with pytest.raises(AssertionError):
        recorded("api_key.revoked", tenant=tenant, actor=owner, ip="192.0.2.1")
