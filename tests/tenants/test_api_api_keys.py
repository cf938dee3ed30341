"""/api/v1/api-keys: list, create (the key shown once), revoke; never deleted."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tenants.models import AuditLog, EndUser, TenantAPIKey
from tests.factories import EndUserFactory, MembershipFactory, TenantAPIKeyFactory, plan

URL = "/api/v1/api-keys"


def detail_url(key) -> str:
    return f"{URL}/{key.pk}"


def revoke_url(key) -> str:
    return f"{URL}/{key.pk}/revoke"


def signed_in(tenant, role: str):
    user = MembershipFactory(tenant=tenant, role=role).user
    client = APIClient()
    client.force_login(user)
    client.user = user
    return client


def bearer(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


def with_key(tenant, scopes=("manage",), end_user=None):
    key = TenantAPIKeyFactory(tenant=tenant, scopes=list(scopes), end_user=end_user)
    client = bearer(key.raw_key)
    client.api_key = key
    return client


def routes(key) -> list[tuple[str, str]]:
    return [("get", URL), ("post", URL), ("get", detail_url(key)), ("post", revoke_url(key))]


def test_anonymous_callers_get_401(tenant):
    key = TenantAPIKeyFactory(tenant=tenant)
    for method, url in routes(key):
        response = getattr(APIClient(), method)(url, {"name": "x"}, format="json")
        assert response.status_code == 401, (method, url)
    assert TenantAPIKey.objects.get().revoked_at is None


@pytest.mark.parametrize(
    "make_client",
    [
        pytest.param(lambda t: signed_in(t, "member"), id="member"),
        pytest.param(lambda t: signed_in(t, "viewer"), id="viewer"),
        pytest.param(lambda t: with_key(t, scopes=["usage:read", "completions"]), id="no-manage"),
        pytest.param(
            lambda t: with_key(t, end_user=EndUserFactory(tenant=t)), id="bound-manage-key"
        ),
    ],
)
def test_only_managers_and_unbound_manage_keys_may_call(tenant, make_client):
    target = TenantAPIKeyFactory(tenant=tenant)
    client = make_client(tenant)
    for method, url in routes(target):
        response = getattr(client, method)(url, {"name": "x"}, format="json")
        assert response.status_code == 403, (method, url)
        assert set(response.json()) == {"detail"}
    target.refresh_from_db()
    assert target.revoked_at is None
    assert not AuditLog.objects.exists()


def test_another_tenants_key_is_not_found(tenant, other_tenant):
    theirs = TenantAPIKeyFactory(tenant=other_tenant)
    client = signed_in(tenant, "admin")

    assert client.get(detail_url(theirs)).status_code == 404
    assert client.post(revoke_url(theirs)).status_code == 404
    theirs.refresh_from_db()
    assert theirs.revoked_at is None


def test_the_list_shows_prefixes_never_keys_or_hashes(
    tenant, other_tenant, django_assert_max_num_queries
):
    client = signed_in(tenant, "owner")
    keys = [
        TenantAPIKeyFactory(tenant=tenant, end_user=EndUserFactory(tenant=tenant)) for _ in range(3)
    ]
    TenantAPIKeyFactory(tenant=other_tenant)
    client.get(URL)  # the first request stores the active tenant in the session

    with django_assert_max_num_queries(5):
        response = client.get(URL)

    assert response.status_code == 200
    body = response.json()
    assert {row["id"] for row in body["results"]} == {k.pk for k in keys}
    raw = response.content.decode()
    for key in keys:
        assert key.raw_key not in raw
        assert key.key_hash not in raw
    assert body["results"][0]["prefix"].startswith("sy-")


def test_create_returns_the_key_once_and_stores_its_hash(tenant):
    client = signed_in(tenant, "owner")

    response = client.post(
        URL, {"name": "backend", "scopes": ["usage:read", "manage"]}, format="json"
    )

    assert response.status_code == 201, response.content
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    raw = body["key"]
    assert raw.startswith("sy-")
    assert raw.startswith(body["prefix"])
    key = TenantAPIKey.objects.get()
    assert key.matches(raw)
    assert key.scopes == ["usage:read", "manage"]
    assert key.created_by == client.user
    assert AuditLog.objects.get().action == "api_key.created"
    # Never again: not in the list, not in the key's own page, not in the audit log.
    assert raw not in client.get(URL).content.decode()
    assert raw not in client.get(detail_url(key)).content.decode()
    assert raw not in str(AuditLog.objects.get().changes)
    # And it works.
    assert bearer(raw).get("/api/v1/limits").status_code == 200


def test_create_with_defaults_and_a_bound_end_user(tenant):
    client = with_key(tenant)

    response = client.post(
        URL,
        {"name": "alice's bot", "end_user": "alice", "requests_per_minute": 5},
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["end_user"] == "alice"
    assert body["requests_per_minute"] == 5
    assert body["scopes"] == ["completions", "embeddings", "models"]
    assert EndUser.objects.filter(tenant=tenant, external_id="alice").exists()
    assert AuditLog.objects.filter(action="api_key.created", tenant=tenant).exists()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({}, id="no-name"),
        pytest.param({"name": "x" * 101}, id="long-name"),
        pytest.param({"name": "k", "scopes": []}, id="no-scopes"),
        pytest.param({"name": "k", "scopes": ["root"]}, id="unknown-scope"),
        pytest.param({"name": "k", "requests_per_minute": 0}, id="zero-rpm"),
        pytest.param({"name": "k", "requests_per_minute": 10**6}, id="above-the-plan"),
        pytest.param({"name": "k", "end_user": ""}, id="blank-end-user"),
    ],
)
def test_invalid_input_is_a_400_and_nothing_is_saved(tenant, data):
    assert plan().requests_per_minute  # the plan has a limit to exceed
    client = signed_in(tenant, "admin")
    before = TenantAPIKey.objects.count()

    response = client.post(URL, data, format="json")

    assert response.status_code == 400
    assert set(response.json()) == {"detail"}
    assert TenantAPIKey.objects.count() == before
    assert not EndUser.objects.exists()
    assert not AuditLog.objects.exists()


def test_revoke_stops_the_key_and_is_audited(tenant):
    target = TenantAPIKeyFactory(tenant=tenant, scopes=["usage:read"])
    client = signed_in(tenant, "admin")

    response = client.post(revoke_url(target))
    again = client.post(revoke_url(target))

    assert response.status_code == 200
    assert response.json()["is_revoked"] is True
    assert again.status_code == 200
    target.refresh_from_db()
    assert target.revoked_at is not None
    assert list(AuditLog.objects.values_list("action", flat=True)) == ["api_key.revoked"]
    assert bearer(target.raw_key).get("/api/v1/limits").status_code == 401


def test_keys_are_never_deleted(tenant):
    target = TenantAPIKeyFactory(tenant=tenant)
    client = signed_in(tenant, "owner")

    assert client.delete(detail_url(target)).status_code == 405
    assert client.patch(detail_url(target), {"name": "x"}, format="json").status_code == 405
    assert TenantAPIKey.objects.filter(pk=target.pk).exists()
