"""Hostile credentials: forged, mangled, revoked, under-scoped and borrowed keys and
playground tokens. Each is refused with its status and code, calls no provider, reserves
and records nothing, and never echoes what was sent."""

from __future__ import annotations

import secrets

import httpx
import pytest
from django.core import signing
from rest_framework.test import APIClient

from routing import selectors as routing_selectors
from tenants import services
from tenants.models import AuditLog, EndUser, TenantAPIKey
from tests.factories import EndUserFactory, TenantAPIKeyFactory, TenantFactory
from tests.security.clients import raw_http, signed_in, stored, with_key
from usage.models import UsageRecord

CHAT = {"model": "sim-eco", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


def chat(world, authorization: str | bytes | None, body=CHAT):
    headers = {} if authorization is None else {"Authorization": authorization}
    return httpx.post(f"{world.base_url}/chat/completions", headers=headers, json=body, timeout=10)


def assert_refused(world, response, status: int, code: str, sent: str = "") -> dict:
    """The refusal, and that nothing happened behind it."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    if len(sent) > len("Bearer sy-"):  # shorter is part of the message's own example
        assert sent not in response.text
    assert world.sim.log == []
    world.gateway.flush_usage()
    assert not UsageRecord.objects.exists()
    return error


@pytest.fixture
def world(world):
    # Refusals below count towards the auth-failure throttle; each test starts from zero.
    guard = getattr(world.gateway.app.gateway, "auth_failures", None)
    if guard is not None:
        guard.blocked.clear()
    yield world
    if guard is not None:
        guard.blocked.clear()


# --- gateway: forged and mangled keys ---------------------------------------------------------


def test_the_right_prefix_with_a_wrong_secret_is_401(world):
    # The prefix is what lists show; knowing it must not help.
    forged = world.key_row.prefix + secrets.token_urlsafe(32)[: len(world.api_key) - 10]
    assert len(forged) == len(world.api_key)

    error = assert_refused(world, chat(world, f"Bearer {forged}"), 401, "invalid_api_key", forged)
    assert "Bearer sy-" in error["message"]  # says how to authenticate, nothing more


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda k: k[:-1], id="truncated"),
        pytest.param(lambda k: k + "A", id="one-character-longer"),
        pytest.param(lambda k: k.upper(), id="upper-cased"),
        pytest.param(lambda k: f"{k} {k}", id="sent-twice"),
        pytest.param(lambda k: "sy-", id="prefix-only"),
    ],
)
def test_a_mangled_key_is_401(world, mangle):
    value = mangle(world.api_key)
    assert_refused(world, chat(world, f"Bearer {value}"), 401, "invalid_api_key", value)


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param("Basic {key}", id="basic-scheme"),
        pytest.param("Token {key}", id="token-scheme"),
        pytest.param("{key}", id="no-scheme"),
        pytest.param("Bearer", id="scheme-without-key"),
    ],
)
def test_a_key_under_another_scheme_is_401(world, authorization):
    value = authorization.format(key=world.api_key)
    assert_refused(world, chat(world, value), 401, "invalid_api_key", world.api_key)


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(b"Bearer sy-\x00" + b"A" * 40, id="nul"),
        pytest.param("Bearer sy-ключ-🔑-ключ".encode(), id="utf-8"),
        pytest.param(b"Bearer sy-\x01\x02\x7f" + b"A" * 40, id="control-characters"),
        pytest.param(b"Bearer sy-" + b"A" * 60_000, id="60-kb"),
    ],
)
def test_bytes_no_key_has_are_refused_without_a_server_error(world, header):
    body = httpx.Request("POST", "http://x", json=CHAT).content
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\nAuthorization: %s\r\n"
        % (len(body), header)
    )

    status, payload = raw_http(world.gateway.url, head, body)

    # The HTTP parser may refuse the header outright (400/431); past it, authentication does.
    assert status in (400, 401, 431), payload
    assert header[7:40] not in payload
    assert world.sim.log == []
    world.gateway.flush_usage()
    assert not UsageRecord.objects.exists()


# --- gateway: scopes and bound end users ------------------------------------------------------


def test_an_embeddings_only_key_can_neither_chat_nor_list_models(world):
    key = TenantAPIKeyFactory(tenant=world.tenant, scopes=["embeddings"])
    world.gateway.sync()

    error = assert_refused(
        world, chat(world, f"Bearer {key.raw_key}"), 403, "insufficient_scope", key.raw_key
    )
    assert "'completions'" in error["message"]
    models = httpx.get(
        f"{world.base_url}/models", headers={"Authorization": f"Bearer {key.raw_key}"}
    )
    assert models.status_code == 403
    assert "'models'" in models.json()["error"]["message"]


def test_a_key_without_scopes_is_refused_by_the_gateway_and_the_api_alike(world):
    key = TenantAPIKeyFactory(tenant=world.tenant, scopes=[])
    world.gateway.sync()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key.raw_key}")
    before = stored()

    assert_refused(world, chat(world, f"Bearer {key.raw_key}"), 403, "insufficient_scope")
    assert api.get("/api/v1/usage").status_code == 403
    response = api.post("/api/v1/api-keys", {"name": "escalate"}, format="json")
    assert response.status_code == 403
    assert set(response.json()) == {"detail"}
    assert stored() == before


def test_a_key_bound_to_an_end_user_ignores_the_user_field(world):
    alice = EndUserFactory(tenant=world.tenant, external_id="alice")
    key = TenantAPIKeyFactory(tenant=world.tenant, end_user=alice)
    world.gateway.sync()

    response = chat(world, f"Bearer {key.raw_key}", {**CHAT, "user": "mallory"})

    assert response.status_code == 200, response.text
    world.gateway.flush_usage()
    record = UsageRecord.objects.get()
    assert record.end_user_id == alice.pk
    assert record.api_key_id == key.pk
    assert not EndUser.objects.filter(external_id="mallory").exists()


# --- gateway: playground tokens ---------------------------------------------------------------


def playground_token(payload, **signing_options) -> str:
    return routing_selectors.PLAYGROUND_TOKEN_PREFIX + signing.dumps(
        payload, salt=routing_selectors.PLAYGROUND_TOKEN_SALT, **signing_options
    )


@pytest.fixture
def member_end_user(world):
    return EndUserFactory(tenant=world.tenant, external_id="pg-member")


def test_a_playground_token_signed_with_a_guessed_secret_key_is_refused(world, member_end_user):
    payload = {"t": world.tenant.pk, "u": member_end_user.pk, "x": member_end_user.external_id}
    genuine = routing_selectors.playground_token(tenant=world.tenant, end_user=member_end_user)
    assert chat(world, f"Bearer {genuine}").status_code == 200  # the shape is right
    world.gateway.flush_usage()
    UsageRecord.objects.all().delete()
    world.sim.clear_log()

    forged = playground_token(payload, key="insecure-dev-only")

    assert_refused(world, chat(world, f"Bearer {forged}"), 401, "invalid_api_key", forged)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(["t", 1, "u", 2], id="a-list"),
        pytest.param({"t": "1", "u": 1, "x": "a"}, id="tenant-id-as-text"),
        pytest.param({"t": 1, "u": None, "x": "a"}, id="no-end-user"),
        pytest.param({"t": 1, "u": 1}, id="no-external-id"),
        pytest.param({"t": 999_999, "u": 1, "x": "a"}, id="tenant-that-does-not-exist"),
    ],
)
def test_a_correctly_signed_playground_token_with_a_bad_payload_is_refused(world, payload):
    # Signed with the real secret: only the payload checks stand between it and the gateway.
    assert_refused(
        world, chat(world, f"Bearer {playground_token(payload)}"), 401, "invalid_api_key"
    )


def test_a_playground_token_is_no_management_api_credential(world, member_end_user):
    token = routing_selectors.playground_token(tenant=world.tenant, end_user=member_end_user)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    response = api.get("/api/v1/usage")

    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid API key."}


# --- management API ---------------------------------------------------------------------------


def test_a_revoked_key_cannot_write(tenant):
    client = with_key(tenant)
    services.revoke_api_key(key=client.api_key)
    before = stored()

    response = client.post("/api/v1/api-keys", {"name": "comeback"}, format="json")

    assert response.status_code == 401
    assert response.json() == {"detail": "This API key has been revoked."}
    assert stored() == before


@pytest.mark.parametrize(
    ("authorization", "detail"),
    [
        pytest.param("Bearer {key} extra", "Malformed Authorization header", id="three-parts"),
        pytest.param("Bearer {key}\u00e9", "Invalid API key.", id="non-ascii"),
        pytest.param("Bearer sy-" + "A" * 5000, "Invalid API key.", id="5000-characters"),
    ],
)
def test_odd_bearer_values_are_401_on_the_management_api(tenant, authorization, detail):
    key = TenantAPIKeyFactory(tenant=tenant, scopes=["usage:read"])
    client = APIClient()
    value = authorization.format(key=key.raw_key)
    client.credentials(HTTP_AUTHORIZATION=value.encode().decode("latin-1"))

    response = client.get("/api/v1/usage")

    assert response.status_code == 401
    assert detail in response.json()["detail"]
    assert key.raw_key not in response.content.decode()
    key.refresh_from_db()
    assert key.last_used_at is None


def test_a_bad_key_beside_a_valid_session_is_401_not_the_session(tenant):
    client = signed_in(tenant, "owner")
    assert client.get("/api/v1/api-keys").status_code == 200
    client.credentials(HTTP_AUTHORIZATION="Bearer sy-not-a-key-0000000000000000000000000")
    before = stored()

    response = client.post("/api/v1/api-keys", {"name": "via session"}, format="json")

    assert response.status_code == 401
    assert stored() == before


def test_another_tenants_key_acts_only_in_its_own_tenant(tenant):
    other = TenantFactory(slug="elsewhere")
    theirs = with_key(other, scopes=["manage"])
    before = TenantAPIKey.objects.filter(tenant=tenant).count()

    response = theirs.post("/api/v1/api-keys", {"name": "planted"}, format="json")

    assert response.status_code == 201
    assert TenantAPIKey.objects.get(pk=response.json()["id"]).tenant == other
    assert TenantAPIKey.objects.filter(tenant=tenant).count() == before
    assert not AuditLog.objects.filter(tenant=tenant).exists()
