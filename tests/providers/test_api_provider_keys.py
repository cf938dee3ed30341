"""/api/v1/provider-keys: who may do what, the live check before saving, secrets never shown."""

from __future__ import annotations

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from providers.choices import KeyScope, KeyStatus
from providers.models import ProviderKey
from tenants.models import AuditLog, EndUser
from tenants.services import end_user_for_login
from tests.factories import (
    CatalogModelFactory,
    EndUserFactory,
    MembershipFactory,
    ProviderFactory,
    ProviderKeyFactory,
    TenantAPIKeyFactory,
)

URL = "/api/v1/provider-keys"
GOOD_SECRET = "sk-sim-good-api-7f3a9c21"
OTHER_GOOD_SECRET = "sk-sim-good-api-0b1e55d2"
BAD_SECRET = "sim-bad-api-secret-0001"
STORED_SECRET = "sk-stored-secret-4242"


def detail_url(key) -> str:
    return f"{URL}/{key.pk}"


def replace_url(key) -> str:
    return f"{URL}/{key.pk}/replace"


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
    client.api_key = key
    return client


@pytest.fixture
def sim_provider(sim):
    """A provider served by the simulator; keys are checked on its cheapest chat model."""
    provider = ProviderFactory(name="Simulated", slug="simulated", base_url=f"{sim.url}/v1")
    CatalogModelFactory(
        provider=provider,
        model_id="sim-eco",
        input_price_per_mtok=Decimal("0.10"),
        output_price_per_mtok=Decimal("0.40"),
    )
    return provider


def new_key(provider, secret=GOOD_SECRET, scope="tenant", **extra):
    return {"provider": provider.slug, "scope": scope, "secret": secret, "label": "prod", **extra}


def routes(key) -> list[tuple[str, str, dict]]:
    return [
        ("get", URL, {}),
        ("post", URL, {"provider": "x", "scope": "tenant", "secret": GOOD_SECRET}),
        ("get", detail_url(key), {}),
        ("patch", detail_url(key), {"is_enabled": False}),
        ("post", replace_url(key), {"secret": GOOD_SECRET}),
        ("delete", detail_url(key), {}),
    ]


def call(client, method, url, data):
    return getattr(client, method)(url, data, format="json")


# --- who may call -----------------------------------------------------------------------------


def test_anonymous_callers_get_401_everywhere(tenant):
    key = ProviderKeyFactory(tenant=tenant)
    for method, url, data in routes(key):
        assert call(APIClient(), method, url, data).status_code == 401, (method, url)
    assert ProviderKey.objects.filter(pk=key.pk, is_enabled=True).exists()


@pytest.mark.parametrize(
    "make_client",
    [
        pytest.param(lambda t: signed_in(t, "viewer"), id="viewer"),
        pytest.param(lambda t: with_key(t, scopes=["usage:read", "completions"]), id="no-manage"),
    ],
)
def test_viewers_and_keys_without_manage_get_403_everywhere(tenant, make_client):
    key = ProviderKeyFactory(tenant=tenant)
    client = make_client(tenant)
    for method, url, data in routes(key):
        response = call(client, method, url, data)
        assert response.status_code == 403, (method, url)
        assert set(response.json()) == {"detail"}
    assert ProviderKey.objects.filter(pk=key.pk, is_enabled=True).exists()


def test_another_tenants_key_is_not_found(tenant, other_tenant, sim):
    theirs = ProviderKeyFactory(tenant=other_tenant, secret=STORED_SECRET)
    client = signed_in(tenant, "owner")

    for method, url, data in routes(theirs)[2:]:
        assert call(client, method, url, data).status_code == 404, (method, url)
    theirs.refresh_from_db()
    assert theirs.is_enabled
    assert theirs.reveal_secret() == STORED_SECRET
    assert sim.log == []


def test_another_users_own_key_is_not_found_even_for_an_owner(tenant, sim):
    someone = MembershipFactory(tenant=tenant, role="member").user
    theirs = ProviderKeyFactory(
        tenant=tenant,
        scope=KeyScope.USER,
        end_user=end_user_for_login(tenant=tenant, user=someone),
    )
    client = signed_in(tenant, "owner")

    for method, url, data in routes(theirs)[2:]:
        assert call(client, method, url, data).status_code == 404, (method, url)
    assert ProviderKey.objects.filter(pk=theirs.pk, is_enabled=True).exists()


def test_a_member_reads_the_tenants_keys_but_cannot_change_them(tenant, sim_provider, sim):
    key = ProviderKeyFactory(tenant=tenant, provider=sim_provider)
    client = signed_in(tenant, "member")

    assert client.get(detail_url(key)).status_code == 200
    for method, url, data in routes(key)[3:]:
        assert call(client, method, url, data).status_code == 403, (method, url)
    response = client.post(URL, new_key(sim_provider), format="json")

    assert response.status_code == 403
    assert ProviderKey.objects.filter(pk=key.pk, is_enabled=True).count() == 1
    assert ProviderKey.objects.count() == 1
    assert sim.log == []


# --- listing ------------------------------------------------------------------------------------


def test_the_list_shows_the_tenants_keys_and_my_own_masked(
    tenant, other_tenant, django_assert_max_num_queries
):
    client = signed_in(tenant, "member")
    mine = end_user_for_login(tenant=tenant, user=client.user)
    someone = MembershipFactory(tenant=tenant, role="member").user
    shared = [ProviderKeyFactory(tenant=tenant) for _ in range(3)]
    own = ProviderKeyFactory(tenant=tenant, scope=KeyScope.USER, end_user=mine)
    ProviderKeyFactory(
        tenant=tenant,
        scope=KeyScope.USER,
        end_user=end_user_for_login(tenant=tenant, user=someone),
    )
    ProviderKeyFactory(tenant=other_tenant)
    client.get(URL)  # the first request stores the active tenant in the session

    # Session, user, membership, profile, count, page: none per key.
    with django_assert_max_num_queries(6):
        response = client.get(URL)

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 4
    assert {row["id"] for row in body["results"]} == {k.pk for k in [*shared, own]}
    row = next(r for r in body["results"] if r["id"] == own.pk)
    assert row["scope"] == "user"
    assert row["end_user"] == mine.external_id
    assert row["masked"] == f"••••{own.secret[-4:]}"
    raw = response.content.decode()
    for key in ProviderKey.objects.all():
        assert key.reveal_secret() not in raw
    assert "secret" not in row


def test_an_unbound_key_lists_one_end_users_keys_by_their_id(tenant):
    alice = EndUserFactory(tenant=tenant, external_id="alice")
    bob = EndUserFactory(tenant=tenant, external_id="bob")
    shared = ProviderKeyFactory(tenant=tenant)
    hers = ProviderKeyFactory(tenant=tenant, scope=KeyScope.USER, end_user=alice)
    ProviderKeyFactory(tenant=tenant, scope=KeyScope.USER, end_user=bob)
    client = with_key(tenant)

    ids = {r["id"] for r in client.get(URL, {"end_user": "alice"}).json()["results"]}
    only_tenant = {r["id"] for r in client.get(URL).json()["results"]}

    assert ids == {shared.pk, hers.pk}
    assert only_tenant == {shared.pk}


# --- adding -------------------------------------------------------------------------------------


def test_an_owner_adds_a_tenant_key_the_provider_accepts(tenant, sim_provider, sim):
    client = signed_in(tenant, "owner")

    response = client.post(URL, new_key(sim_provider), format="json")

    assert response.status_code == 201, response.content
    assert GOOD_SECRET not in response.content.decode()
    body = response.json()
    assert body["masked"] == f"••••{GOOD_SECRET[-4:]}"
    assert body["status"] == "active"
    assert body["scope"] == "tenant"
    assert body["provider"] == "simulated"
    assert body["validation_note"] is None
    key = ProviderKey.objects.get()
    assert key.tenant == tenant
    assert key.end_user is None
    assert key.reveal_secret() == GOOD_SECRET
    assert [entry["api_key"] for entry in sim.log] == [GOOD_SECRET]
    actions = set(AuditLog.objects.filter(tenant=tenant).values_list("action", flat=True))
    assert {"provider_key.added", "provider_key.validated"} <= actions


def test_a_key_the_provider_refuses_is_a_400_and_nothing_is_saved(tenant, sim_provider, sim):
    client = signed_in(tenant, "owner")

    response = client.post(URL, new_key(sim_provider, secret=BAD_SECRET), format="json")

    assert response.status_code == 400
    assert "rejected this key (401)" in response.json()["detail"]
    assert "Nothing was saved" in response.json()["detail"]
    assert BAD_SECRET not in response.content.decode()
    assert not ProviderKey.objects.exists()
    # Nothing changed, but the refused attempt is on the record (without the key).
    assert list(AuditLog.objects.values_list("action", flat=True)) == ["provider_key.check_refused"]


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"secret": ""}, id="empty-secret"),
        pytest.param({"secret": None}, id="no-secret"),
        pytest.param({"provider": "nope"}, id="unknown-provider"),
        pytest.param({"scope": "platform"}, id="platform-scope"),
        pytest.param({"label": "x" * 101}, id="long-label"),
        pytest.param({"end_user": "alice"}, id="end-user-on-a-tenant-key"),
    ],
)
def test_invalid_input_is_a_400_and_nothing_is_saved_or_checked(tenant, sim_provider, sim, change):
    client = signed_in(tenant, "owner")
    data = {k: v for k, v in {**new_key(sim_provider), **change}.items() if v is not None}

    response = client.post(URL, data, format="json")

    assert response.status_code == 400
    assert set(response.json()) == {"detail"}
    assert not ProviderKey.objects.exists()
    assert sim.log == []


def test_another_tenants_custom_endpoint_is_not_a_choice(tenant, other_tenant, sim):
    theirs = ProviderFactory(tenant=other_tenant, slug="theirs", base_url=f"{sim.url}/v1")
    client = signed_in(tenant, "owner")

    response = client.post(URL, new_key(theirs), format="json")

    assert response.status_code == 400
    assert response.json()["detail"].startswith("provider:")
    assert not ProviderKey.objects.exists()
    assert sim.log == []


def test_a_member_adds_their_own_key(tenant, sim_provider):
    client = signed_in(tenant, "member")

    response = client.post(URL, new_key(sim_provider, scope="user"), format="json")

    assert response.status_code == 201, response.content
    key = ProviderKey.objects.get()
    assert key.scope == KeyScope.USER
    assert key.end_user.user == client.user
    assert response.json()["end_user"] == key.end_user.external_id


def test_a_member_cannot_name_another_end_user(tenant, sim_provider, sim):
    client = signed_in(tenant, "member")

    response = client.post(URL, new_key(sim_provider, scope="user", end_user="bob"), format="json")

    assert response.status_code == 400
    assert not ProviderKey.objects.exists()
    assert not EndUser.objects.filter(external_id="bob").exists()
    assert sim.log == []


def test_an_unbound_manage_key_adds_an_end_users_key(tenant, sim_provider):
    client = with_key(tenant)

    missing = client.post(URL, new_key(sim_provider, scope="user"), format="json")
    response = client.post(
        URL, new_key(sim_provider, scope="user", end_user="alice"), format="json"
    )

    assert missing.status_code == 400
    assert response.status_code == 201, response.content
    key = ProviderKey.objects.get()
    assert key.end_user.external_id == "alice"
    assert AuditLog.objects.filter(action="provider_key.added", target_id=str(key.pk)).exists()


def test_a_bound_key_manages_only_its_end_users_keys(tenant, sim_provider, sim):
    alice = EndUserFactory(tenant=tenant, external_id="alice")
    shared = ProviderKeyFactory(tenant=tenant, provider=sim_provider)
    bobs = ProviderKeyFactory(
        tenant=tenant, scope=KeyScope.USER, end_user=EndUserFactory(tenant=tenant)
    )
    client = with_key(tenant, end_user=alice)

    tenant_key = client.post(URL, new_key(sim_provider), format="json")
    own = client.post(URL, new_key(sim_provider, scope="user"), format="json")

    assert tenant_key.status_code == 403
    assert own.status_code == 201
    assert ProviderKey.objects.get(pk=own.json()["id"]).end_user == alice
    assert client.patch(detail_url(shared), {"label": "x"}, format="json").status_code == 403
    assert client.get(detail_url(bobs)).status_code == 404
    listed = {r["id"] for r in client.get(URL).json()["results"]}
    assert listed == {shared.pk, own.json()["id"]}


# --- changing -----------------------------------------------------------------------------------


def test_patch_renames_and_disables_through_the_services(tenant):
    key = ProviderKeyFactory(tenant=tenant, label="old", secret=STORED_SECRET)
    client = signed_in(tenant, "admin")

    response = client.patch(detail_url(key), {"label": "new", "is_enabled": False}, format="json")

    assert response.status_code == 200
    assert response.json()["label"] == "new"
    assert response.json()["is_enabled"] is False
    assert STORED_SECRET not in response.content.decode()
    key.refresh_from_db()
    assert (key.label, key.is_enabled) == ("new", False)
    actions = set(AuditLog.objects.filter(target_id=str(key.pk)).values_list("action", flat=True))
    assert actions == {"provider_key.renamed", "provider_key.disabled"}


def test_an_invalid_patch_is_a_400_and_changes_nothing(tenant):
    key = ProviderKeyFactory(tenant=tenant, label="old")
    client = signed_in(tenant, "owner")

    response = client.patch(
        detail_url(key), {"label": "x" * 101, "is_enabled": "maybe"}, format="json"
    )

    assert response.status_code == 400
    key.refresh_from_db()
    assert (key.label, key.is_enabled) == ("old", True)
    assert not AuditLog.objects.exists()


def test_replace_checks_the_new_secret_before_swapping_it(tenant, sim_provider, sim):
    key = ProviderKeyFactory(tenant=tenant, provider=sim_provider, secret=STORED_SECRET)
    client = signed_in(tenant, "owner")

    refused = client.post(replace_url(key), {"secret": BAD_SECRET}, format="json")
    key.refresh_from_db()
    assert refused.status_code == 400
    assert "unchanged" in refused.json()["detail"]
    assert key.reveal_secret() == STORED_SECRET

    response = client.post(replace_url(key), {"secret": OTHER_GOOD_SECRET}, format="json")

    assert response.status_code == 200, response.content
    raw = response.content.decode()
    assert OTHER_GOOD_SECRET not in raw
    assert STORED_SECRET not in raw
    assert response.json()["masked"] == f"••••{OTHER_GOOD_SECRET[-4:]}"
    key.refresh_from_db()
    assert key.reveal_secret() == OTHER_GOOD_SECRET
    assert key.status == KeyStatus.ACTIVE
    assert AuditLog.objects.filter(action="provider_key.replaced", target_id=str(key.pk)).exists()


def test_a_member_replaces_and_deletes_their_own_key(tenant, sim_provider):
    client = signed_in(tenant, "member")
    own = ProviderKeyFactory(
        tenant=tenant,
        provider=sim_provider,
        scope=KeyScope.USER,
        end_user=end_user_for_login(tenant=tenant, user=client.user),
    )

    replaced = client.post(replace_url(own), {"secret": OTHER_GOOD_SECRET}, format="json")
    deleted = client.delete(detail_url(own))

    assert replaced.status_code == 200
    assert deleted.status_code == 204
    assert not ProviderKey.objects.exists()
    assert AuditLog.objects.filter(action="provider_key.deleted", target_id=str(own.pk)).exists()


def test_delete_removes_the_key_through_the_service(tenant):
    key = ProviderKeyFactory(tenant=tenant)
    client = with_key(tenant)

    response = client.delete(detail_url(key))

    assert response.status_code == 204
    assert not ProviderKey.objects.filter(pk=key.pk).exists()
    entry = AuditLog.objects.get(action="provider_key.deleted")
    assert entry.tenant == tenant
    assert entry.changes == {"key": key.masked}
