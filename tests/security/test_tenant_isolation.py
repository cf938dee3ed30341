"""Tenant A's owner reaching for tenant B's rows, by id, through every management-API
endpoint and every page that takes one: a 404 that reads exactly like the 404 of an id that
never existed (no 403 that confirms it does), and B's rows untouched. The gateway keeps
tenants apart too: B's keys, custom endpoints and end users are never A's."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from django.urls import reverse
from django.utils import timezone

from providers.choices import KeyScope
from tenants.api.tenancy import SESSION_TENANT_KEY
from tenants.models import Invitation
from tests.factories import (
    CatalogModelFactory,
    EndUserFactory,
    MembershipFactory,
    ProviderFactory,
    ProviderKeyFactory,
    SpendingCapFactory,
    TenantAPIKeyFactory,
    TenantFactory,
)
from tests.security.clients import signed_in, stored
from tests.world_fixtures import add_provider
from usage.models import UsageRecord

MISSING = 10**9  # an id no row has

# (method, path with {id}, body, the kind of B's row it names)
API_ROUTES = [
    ("get", "/api/v1/provider-keys/{id}", None, "provider_key"),
    ("patch", "/api/v1/provider-keys/{id}", {"is_enabled": False}, "provider_key"),
    ("delete", "/api/v1/provider-keys/{id}", None, "provider_key"),
    ("post", "/api/v1/provider-keys/{id}/replace", {"secret": "sk-new-0001"}, "provider_key"),
    ("get", "/api/v1/api-keys/{id}", None, "api_key"),
    ("post", "/api/v1/api-keys/{id}/revoke", None, "api_key"),
    ("get", "/api/v1/members/{id}", None, "membership"),
    ("patch", "/api/v1/members/{id}", {"role": "viewer"}, "membership"),
    ("delete", "/api/v1/members/{id}", None, "membership"),
    ("delete", "/api/v1/invitations/{id}", None, "invitation"),
    ("get", "/api/v1/spending-caps/{id}", None, "cap"),
    ("patch", "/api/v1/spending-caps/{id}", {"amount_usd": "1.00"}, "cap"),
    ("delete", "/api/v1/spending-caps/{id}", None, "cap"),
]

# (method, URL name, body, the kind of B's row it names)
PAGE_ROUTES = [
    ("get", "providers:key-replace", None, "provider_key"),
    ("post", "providers:key-replace", {"secret": "sk-new-0001"}, "provider_key"),
    ("post", "providers:key-set-enabled", {"enabled": "0"}, "provider_key"),
    ("get", "providers:key-delete", None, "provider_key"),
    ("post", "providers:key-delete", {}, "provider_key"),
    ("get", "tenants:api-key-revoke", None, "api_key"),
    ("post", "tenants:api-key-revoke", {}, "api_key"),
    ("post", "tenants:member-role", {"role": "viewer"}, "membership"),
    ("get", "tenants:member-remove", None, "membership"),
    ("post", "tenants:member-remove", {}, "membership"),
    ("get", "tenants:invitation-revoke", None, "invitation"),
    ("post", "tenants:invitation-revoke", {}, "invitation"),
    ("get", "usage:user-cap-edit", None, "cap"),
    ("post", "usage:user-cap-edit", {"cap-amount_usd": "1", "cap-mode": "hard"}, "cap"),
    ("post", "usage:user-cap-set-enabled", {"enabled": "0"}, "cap"),
]


@pytest.fixture
def theirs(other_tenant, sim):
    """One row of every kind tenant B has, each with something recognisable."""
    provider = ProviderFactory(slug="b-sim", base_url=f"{sim.url}/v1")
    CatalogModelFactory(provider=provider, model_id="sim-eco")
    end_user = EndUserFactory(tenant=other_tenant, external_id="b-customer")
    invitation = Invitation(
        tenant=other_tenant,
        email="b-invitee@example.com",
        expires_at=timezone.now() + timedelta(days=7),
    )
    invitation.set_token(Invitation.generate_token())
    invitation.save()
    return {
        "provider_key": ProviderKeyFactory(
            tenant=other_tenant, provider=provider, label="b-label", secret="sk-b-secret-0001"
        ),
        "api_key": TenantAPIKeyFactory(tenant=other_tenant, name="b-api-key"),
        "membership": MembershipFactory(tenant=other_tenant, role="admin"),
        "invitation": invitation,
        "cap": SpendingCapFactory(tenant=other_tenant, scope="user", end_user=end_user),
    }


@pytest.mark.parametrize(
    ("method", "path", "body", "kind"),
    API_ROUTES,
    ids=[f"{m}-{p.removeprefix('/api/v1/')}" for m, p, _, _ in API_ROUTES],
)
def test_another_tenants_row_is_a_404_like_a_row_that_never_was(
    tenant, theirs, sim, method, path, body, kind
):
    client = signed_in(tenant, "owner")
    before = stored()

    response = getattr(client, method)(path.format(id=theirs[kind].pk), body, format="json")
    unknown = getattr(client, method)(path.format(id=MISSING), body, format="json")

    assert response.status_code == 404
    assert response.json() == unknown.json()
    assert stored() == before
    assert sim.log == []  # a replacement secret was not even tried


@pytest.mark.parametrize(
    ("method", "name", "body", "kind"),
    PAGE_ROUTES,
    ids=[f"{m}-{n.split(':')[1]}" for m, n, _, _ in PAGE_ROUTES],
)
def test_another_tenants_row_is_a_404_page(client, tenant, theirs, sim, method, name, body, kind):
    client.force_login(MembershipFactory(tenant=tenant, role="owner").user)
    before = stored()

    response = getattr(client, method)(reverse(name, args=[theirs[kind].pk]), body)

    assert response.status_code == 404
    page = response.content.decode()
    assert "There is nothing here." in page
    for recognisable in ("b-label", "b-api-key", "b-invitee", "b-customer", "Tenant B"):
        assert recognisable not in page
    assert stored() == before
    assert sim.log == []


def test_a_forged_session_tenant_falls_back_to_a_real_membership(client, tenant, theirs):
    user = MembershipFactory(tenant=tenant, role="owner").user
    ProviderKeyFactory(tenant=tenant, label="a-label")
    client.force_login(user)
    session = client.session
    session[SESSION_TENANT_KEY] = theirs["provider_key"].tenant_id
    session.save()

    page = client.get(reverse("providers:key-list")).content.decode()

    assert "a-label" in page
    assert "b-label" not in page
    assert client.session[SESSION_TENANT_KEY] == tenant.pk


def test_a_role_in_one_tenant_grants_nothing_in_another(tenant, other_tenant):
    client = signed_in(tenant, "viewer")
    MembershipFactory(tenant=other_tenant, user=client.user, role="owner")
    before = stored()

    response = client.post("/api/v1/api-keys", {"name": "borrowed rights"}, format="json")

    assert response.status_code == 403
    assert stored() == before


# --- the gateway ------------------------------------------------------------------------------


def post(world, key: str, **body):
    return httpx.post(
        f"{world.base_url}/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, **body},
        timeout=10,
    )


@pytest.fixture
def tenant_b(world):
    return TenantFactory(slug="tenant-b", name="Tenant B")


def test_another_tenants_custom_endpoint_is_an_unknown_model(world, tenant_b):
    b = tenant_b
    private = add_provider(world.sim.url, "b-private")
    private.tenant = b
    private.save()
    ProviderKeyFactory(provider=private, tenant=b, secret="sk-b-private-0001")
    CatalogModelFactory(provider=private, model_id="sim-eco", name="b-private-model")
    world.gateway.sync()

    theirs = post(world, world.api_key, model="b-private-model")
    never = post(world, world.api_key, model="no-such-model")

    assert theirs.status_code == never.status_code == 404
    assert theirs.json()["error"]["code"] == "model_not_found"
    models = httpx.get(f"{world.base_url}/models", headers=world.headers(), timeout=10)
    assert "b-private-model" not in {m["id"] for m in models.json()["data"]}
    assert world.sim.log == []


def test_another_tenants_byok_key_is_never_used(world, tenant_b):
    b = tenant_b
    keyless = add_provider(world.sim.url, "keyless")  # no platform key: BYOK only
    CatalogModelFactory(provider=keyless, model_id="sim-eco", name="byok-only")
    ProviderKeyFactory(provider=keyless, tenant=b, secret="sk-b-byok-secret-0001")
    world.gateway.sync()

    response = post(world, world.api_key, model="byok-only")

    # Served by an equivalent model A may use (auto-failover), or not at all; never by the
    # provider only B's key opens.
    assert response.status_code in (200, 503)
    assert response.headers.get("x-switchyard-provider") != "keyless"
    assert "sk-b-byok-secret-0001" not in {entry["api_key"] for entry in world.sim.log}


def test_the_same_user_id_in_two_tenants_is_two_end_users(world, tenant_b):
    b = tenant_b
    alice_b = EndUserFactory(tenant=b, external_id="alice")
    ProviderKeyFactory(
        provider=world.openai,
        tenant=b,
        end_user=alice_b,
        scope=KeyScope.USER,
        secret="sk-alice-in-b-0001",
    )
    world.gateway.sync()

    response = post(world, world.api_key, model="sim-eco", user="alice")

    assert response.status_code == 200
    assert world.sim.log[-1]["api_key"] != "sk-alice-in-b-0001"
    world.gateway.flush_usage()
    record = UsageRecord.objects.select_related("end_user").get()
    assert record.tenant_id == world.tenant.pk
    assert record.end_user.tenant_id == world.tenant.pk
    assert record.end_user_id != alice_b.pk
