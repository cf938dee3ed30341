"""/api/v1/settings and /api/v1/settings/me: the tenant default, my override, what I get."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from routing.models import LLMSettings
from tenants.models import AuditLog
from tenants.services import end_user_for_login
from tests.factories import (
    CatalogModelFactory,
    EndUserFactory,
    LLMSettingsFactory,
    MembershipFactory,
    ProviderFactory,
    TenantAPIKeyFactory,
    ensure_default_data,
)

URL = "/api/v1/settings"
ME = "/api/v1/settings/me"


def signed_in(tenant, role: str):
    user = MembershipFactory(tenant=tenant, role=role).user
    client = APIClient()
    client.force_login(user)
    client.user = user
    return client


def with_key(tenant, scopes=("manage",), end_user=None):
    key = TenantAPIKeyFactory(tenant=tenant, scopes=list(scopes), end_user=end_user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key.raw_key}")
    return client


@pytest.fixture
def catalog(db):
    ensure_default_data()
    fast = ProviderFactory(slug="fast", name="Fast")
    CatalogModelFactory(provider=fast, model_id="fast-small", name="fast-small")
    return fast


def saved():
    """Tenant and end-user rows (the platform's own row comes from a data migration)."""
    return LLMSettings.objects.filter(tenant__isnull=False)


def audit_actions() -> list[str]:
    return list(AuditLog.objects.order_by("pk").values_list("action", flat=True))


WRITES = [("put", URL), ("patch", URL), ("put", ME), ("patch", ME)]


def test_anonymous_callers_get_401(tenant):
    for method, url in [("get", URL), ("get", ME), *WRITES]:
        response = getattr(APIClient(), method)(url, {"power_level": "eco"}, format="json")
        assert response.status_code == 401, (method, url)
    assert not saved().exists()


@pytest.mark.parametrize(
    "make_client",
    [
        pytest.param(lambda t: signed_in(t, "viewer"), id="viewer"),
        pytest.param(lambda t: with_key(t, scopes=["completions", "usage:read"]), id="no-manage"),
    ],
)
def test_viewers_and_keys_without_manage_get_403(tenant, make_client):
    client = make_client(tenant)
    for method, url in [("get", URL), ("get", ME), *WRITES]:
        response = getattr(client, method)(url, {"power_level": "eco"}, format="json")
        assert response.status_code == 403, (method, url)
        assert set(response.json()) == {"detail"}
    assert not saved().exists()


def test_members_and_bound_keys_cannot_change_the_tenant_default(tenant):
    for client in (
        signed_in(tenant, "member"),
        with_key(tenant, end_user=EndUserFactory(tenant=tenant)),
    ):
        for method in ("put", "patch"):
            response = getattr(client, method)(URL, {"power_level": "eco"}, format="json")
            assert response.status_code == 403
    assert not saved().exists()


def test_get_shows_the_tenant_default_and_what_i_get(tenant, catalog):
    LLMSettingsFactory(tenant=tenant, power_level="eco", system_prompt="Be brief.")
    client = signed_in(tenant, "member")
    mine = end_user_for_login(tenant=tenant, user=client.user)
    row = LLMSettingsFactory(tenant=tenant, end_user=mine, power_level="precision")
    row.preferred_providers.set([catalog])

    body = client.get(URL).json()

    assert body["tenant"]["power_level"] == "eco"
    assert body["tenant"]["system_prompt"] == "Be brief."
    assert body["tenant"]["auto_failover"] is None
    assert body["tenant_effective"]["power_level"] == "eco"
    assert body["tenant_effective"]["auto_failover"] is True
    assert body["effective"]["power_level"] == "precision"
    assert body["effective"]["preferred_providers"] == ["fast"]
    assert body["effective"]["system_prompt"] == "Be brief."


def test_an_owner_sets_the_tenant_default_through_the_service(tenant, catalog):
    client = signed_in(tenant, "owner")

    response = client.put(
        URL,
        {
            "power_level": "precision",
            "preferred_providers": ["fast"],
            "preferred_models": ["fast-small"],
            "auto_failover": False,
            "default_temperature": 0.3,
            "system_prompt": "Be brief.",
        },
        format="json",
    )

    assert response.status_code == 200, response.content
    assert response.json()["tenant_effective"]["power_level"] == "precision"
    row = LLMSettings.objects.get(tenant=tenant, end_user=None)
    assert row.power_level == "precision"
    assert [p.slug for p in row.preferred_providers.all()] == ["fast"]
    assert row.preferred_models == ["fast-small"]
    assert (row.auto_failover, row.default_temperature) == (False, 0.3)
    assert audit_actions() == ["llm_settings.created"]


def test_patch_changes_only_what_it_names_and_put_clears_the_rest(tenant, catalog):
    LLMSettingsFactory(tenant=tenant, power_level="eco", system_prompt="Be brief.")
    client = with_key(tenant)

    patched = client.patch(URL, {"default_max_tokens": 256}, format="json")
    row = LLMSettings.objects.get(tenant=tenant, end_user=None)
    assert patched.status_code == 200
    assert (row.power_level, row.system_prompt, row.default_max_tokens) == ("eco", "Be brief.", 256)

    put = client.put(URL, {"power_level": "balanced"}, format="json")
    row.refresh_from_db()
    assert put.status_code == 200
    assert (row.power_level, row.system_prompt, row.default_max_tokens) == ("balanced", "", None)
    assert audit_actions() == ["llm_settings.updated", "llm_settings.updated"]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"power_level": "turbo"}, id="unknown-level"),
        pytest.param({"preferred_models": ["no-such-model"]}, id="unknown-model"),
        pytest.param({"preferred_providers": ["nope"]}, id="unknown-provider"),
        pytest.param({"default_temperature": 3}, id="temperature"),
        pytest.param({"default_max_tokens": 0}, id="max-tokens"),
        pytest.param({"system_prompt": "x" * 8001}, id="prompt"),
    ],
)
def test_invalid_settings_are_a_400_and_nothing_is_saved(tenant, catalog, data):
    client = signed_in(tenant, "admin")

    response = client.patch(URL, {"power_level": "eco", **data}, format="json")

    assert response.status_code == 400
    assert set(response.json()) == {"detail"}
    assert not saved().exists()
    assert not AuditLog.objects.exists()


def test_another_tenants_provider_and_settings_are_out_of_reach(tenant, other_tenant, catalog):
    theirs = ProviderFactory(tenant=other_tenant, slug="theirs")
    LLMSettingsFactory(tenant=other_tenant, power_level="precision", system_prompt="Secret.")
    client = signed_in(tenant, "owner")

    refused = client.patch(URL, {"preferred_providers": [theirs.slug]}, format="json")
    body = client.get(URL).json()

    assert refused.status_code == 400
    assert body["tenant"]["power_level"] == ""
    assert body["tenant_effective"]["system_prompt"] == ""
    assert "Secret." not in str(body)
    assert not LLMSettings.objects.filter(tenant=tenant).exists()


def test_a_member_sets_their_own_override(tenant, catalog):
    LLMSettingsFactory(tenant=tenant, power_level="eco")
    client = signed_in(tenant, "member")

    before = client.get(ME).json()
    response = client.patch(ME, {"power_level": "precision", "auto_failover": False}, format="json")

    assert before["settings"]["power_level"] == ""
    assert before["effective"]["power_level"] == "eco"
    assert response.status_code == 200, response.content
    assert response.json()["settings"]["power_level"] == "precision"
    assert response.json()["effective"]["auto_failover"] is False
    assert "system_prompt" not in response.json()["settings"]
    row = LLMSettings.objects.get(end_user__isnull=False)
    assert row.end_user.user == client.user
    assert LLMSettings.objects.get(tenant=tenant, end_user=None).power_level == "eco"
    assert audit_actions() == ["llm_settings.created"]


def test_the_override_has_no_system_prompt_and_refuses_bad_values(tenant, catalog):
    client = signed_in(tenant, "member")

    response = client.put(ME, {"default_temperature": -1}, format="json")

    assert response.status_code == 400
    assert not saved().exists()


def test_a_bound_key_sets_its_end_users_override(tenant, catalog):
    alice = EndUserFactory(tenant=tenant, external_id="alice")
    client = with_key(tenant, end_user=alice)

    response = client.put(ME, {"power_level": "eco"}, format="json")

    assert response.status_code == 200
    assert saved().get().end_user == alice
    assert client.get(URL).json()["effective"]["power_level"] == "eco"


def test_an_unbound_key_has_no_settings_of_its_own(tenant):
    client = with_key(tenant)

    assert client.get(ME).status_code == 403
    assert client.patch(ME, {"power_level": "eco"}, format="json").status_code == 403
    assert not saved().exists()
