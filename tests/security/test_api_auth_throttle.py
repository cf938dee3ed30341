"""Failed API-key authentications on the management API (/api/v1/*) are throttled per client
address in the same Redis counter as the gateway's (/v1/*): past the limit, every request
bearing a key from that address is refused 429 with Retry-After on both, valid key or not."""

from __future__ import annotations

import logging
import time

import httpx
import pytest
import redis
from django.utils import timezone
from rest_framework.test import APIClient

from tenants import throttle
from tests.factories import MembershipFactory, TenantAPIKeyFactory

URL = "/api/v1/credits"  # any key with `usage:read` (the factory's default) may call it
BAD_KEY = "sy-guessed-0000000000000000000000"
LIMIT = 3
ADDRESS = "127.0.0.1"  # the test client's REMOTE_ADDR and the live gateway's peer


@pytest.fixture
def limits(settings):
    settings.SWITCHYARD_AUTH_FAILURE_LIMIT = LIMIT
    settings.SWITCHYARD_AUTH_FAILURE_WINDOW_SECONDS = 60
    return settings


def api(key: str | None, *, address: str = ADDRESS, client: APIClient | None = None):
    client = client or APIClient()
    extra = {"REMOTE_ADDR": address}
    if key is not None:
        extra["HTTP_AUTHORIZATION"] = f"Bearer {key}" if key else "Bearer"
    return client.get(URL, **extra)


def logged(caplog) -> str:
    """Every log record, message and extras."""
    return "\n".join(str(vars(record)) for record in caplog.records)


def assert_refused(response, window: int = 60) -> None:
    assert response.status_code == 429, response.content
    assert set(response.json()) == {"detail"}  # the API's error shape
    retry_after = int(response["Retry-After"])
    assert 1 <= retry_after <= window
    assert response.json()["detail"] == (
        f"Too many failed authentications from this address; try again in {retry_after} seconds."
    )


@pytest.fixture
def key(tenant):
    return TenantAPIKeyFactory(tenant=tenant)


def test_past_the_limit_an_address_is_refused_even_with_a_valid_key(key, limits, caplog):
    caplog.set_level(logging.INFO)
    revoked = TenantAPIKeyFactory(tenant=key.tenant, revoked_at=timezone.now())
    # An unknown key, a revoked key, a malformed bearer header: each a failure.
    for bad in (BAD_KEY, revoked.raw_key, ""):
        assert api(bad).status_code == 401

    refused = [api(BAD_KEY), api(key.raw_key), api(revoked.raw_key)]

    for response in refused:
        assert_refused(response)
    for secret in (BAD_KEY, key.raw_key, revoked.raw_key):
        assert all(secret.encode() not in r.content for r in refused)
        assert secret not in logged(caplog)
    assert "auth.client_address_blocked" in caplog.messages
    # A refused request is not counted again: the window is not prolonged by guessing.
    counter = redis.Redis.from_url(limits.REDIS_URL).get(
        throttle.counter_key(throttle.API, ADDRESS)
    )
    assert int(counter) == LIMIT


def test_failures_below_the_limit_do_not_refuse_a_valid_key(key, limits):
    for _ in range(LIMIT - 1):
        assert api(BAD_KEY).status_code == 401

    assert api(key.raw_key).status_code == 200


def test_other_addresses_are_not_refused(key, limits):
    for _ in range(LIMIT):
        assert api(BAD_KEY, address="198.51.100.7").status_code == 401
    assert_refused(api(key.raw_key, address="198.51.100.7"))

    assert api(key.raw_key, address="198.51.100.8").status_code == 200
    assert api(key.raw_key).status_code == 200


def test_an_ipv6_client_is_counted_by_its_64(key, limits):
    for n in range(LIMIT):
        assert api(BAD_KEY, address=f"2001:db8:0:7::{n + 1}").status_code == 401

    assert_refused(api(key.raw_key, address="2001:db8:0:7::99"))
    assert api(key.raw_key, address="2001:db8:0:8::1").status_code == 200


def test_the_refusal_ends_with_the_window(key, limits):
    limits.SWITCHYARD_AUTH_FAILURE_WINDOW_SECONDS = 1
    for _ in range(LIMIT):
        api(BAD_KEY)
    assert_refused(api(key.raw_key), window=1)

    time.sleep(1.2)

    assert api(key.raw_key).status_code == 200
    # The count started over: the limit's worth of failures again before a refusal.
    for _ in range(LIMIT):
        assert api(BAD_KEY).status_code == 401
    assert_refused(api(BAD_KEY), window=1)


def test_calls_without_a_key_are_neither_counted_nor_refused(tenant, key, limits):
    # No credentials, or another scheme: not a key guess (401 from the permission check).
    for _ in range(LIMIT):
        assert api(None).status_code == 401
        assert APIClient().get(URL, HTTP_AUTHORIZATION="Basic abc").status_code == 401
    assert api(key.raw_key).status_code == 200

    for _ in range(LIMIT):
        api(BAD_KEY)
    assert_refused(api(key.raw_key))
    # A signed-in user from the refused address: the session is not an API key.
    session = APIClient()
    session.force_login(MembershipFactory(tenant=tenant, role="owner").user)
    assert api(None, client=session).status_code == 200


def test_when_redis_is_unreachable_authentication_fails_open(key, limits, monkeypatch, caplog):
    caplog.set_level(logging.WARNING)
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, socket_timeout=0.5)
    monkeypatch.setattr(throttle, "_client", lambda: dead)

    statuses = [api(BAD_KEY).status_code for _ in range(LIMIT + 2)]

    assert statuses == [401] * (LIMIT + 2)
    assert api(key.raw_key).status_code == 200
    assert "auth.throttle_unavailable" in caplog.messages
    assert "auth.failure_not_counted" in caplog.messages
    assert BAD_KEY not in logged(caplog)
    assert key.raw_key not in logged(caplog)


# --- together with the gateway (/v1/*, the live server) ---------------------------------


@pytest.fixture
def both(world, limits):
    """The live gateway's guard and the management API at the same limit, a minute."""
    failures = world.gateway.app.gateway.auth_failures
    saved = failures.limit, failures.window_seconds
    failures.limit, failures.window_seconds = LIMIT, 60
    failures.blocked.clear()
    yield world
    failures.limit, failures.window_seconds = saved
    failures.blocked.clear()


def gateway(world, key: str) -> httpx.Response:
    return httpx.get(
        f"{world.gateway.url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )


def assert_gateway_refused(response) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "too_many_auth_failures"
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def test_failures_on_the_gateway_and_the_api_add_up(both):
    world = both
    assert api(BAD_KEY).status_code == 401
    assert api(BAD_KEY).status_code == 401
    assert gateway(world, BAD_KEY).status_code == 401  # the limit-th, counted by the gateway

    assert_refused(api(world.api_key))
    assert_gateway_refused(gateway(world, world.api_key))


def test_the_gateways_failures_refuse_a_valid_key_on_the_api(both):
    world = both
    for _ in range(LIMIT):
        assert gateway(world, BAD_KEY).status_code == 401

    assert_refused(api(world.api_key))


def test_the_apis_failures_refuse_guesses_on_the_gateway(both):
    world = both
    for _ in range(LIMIT):
        assert api(BAD_KEY).status_code == 401

    # The gateway learns the refusal from its next failure's count (as across its processes).
    assert_gateway_refused(gateway(world, BAD_KEY))
    assert_gateway_refused(gateway(world, world.api_key))
