"""Bad requests get OpenAI's error envelope with SPEC's status codes, and no success record."""

from __future__ import annotations

import httpx
import pytest

from tenants import services
from usage.choices import Outcome
from usage.models import UsageRecord

OK_BODY = {"model": "sim-eco", "messages": [{"role": "user", "content": "hi"}]}


def post(world, *, json=None, content=None, key=None):
    return httpx.post(
        f"{world.base_url}/chat/completions",
        headers=world.headers(key),
        json=json,
        content=content,
        timeout=10,
    )


def assert_envelope(response, status, code=None):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    if code:
        assert error["code"] == code
    return error


def assert_no_success(world):
    world.gateway.flush_usage()
    assert not UsageRecord.objects.filter(outcome=Outcome.SUCCESS).exists()


def test_unknown_model_is_404(world):
    assert_envelope(post(world, json={**OK_BODY, "model": "no-such-model"}), 404, "model_not_found")
    assert_no_success(world)
    assert world.sim.log == []


def test_revoked_key_is_401_on_the_next_request(world):
    services.revoke_api_key(key=world.key_row)
    world.gateway.sync()

    assert_envelope(post(world, json=OK_BODY), 401, "invalid_api_key")
    assert_no_success(world)


def test_missing_and_unknown_keys_are_401(world):
    assert_envelope(
        httpx.post(f"{world.base_url}/chat/completions", json=OK_BODY), 401, "invalid_api_key"
    )
    assert_envelope(post(world, json=OK_BODY, key="sy-not-a-real-key"), 401, "invalid_api_key")


def test_malformed_json_is_400(world):
    assert_envelope(post(world, content=b"{not json"), 400)
    assert_no_success(world)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "sim-eco"}, "messages"),
        ({"model": "sim-eco", "messages": []}, "messages"),
        ({"model": "sim-eco", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0]"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({**OK_BODY, "max_tokens": -1}, "max_tokens"),
        ({**OK_BODY, "temperature": 9}, "temperature"),
        ({**OK_BODY, "stream": "yes"}, "stream"),
    ],
)
def test_invalid_requests_name_the_offending_param(world, body, param):
    error = assert_envelope(post(world, json=body), 400)
    assert error["param"] == param
    assert world.sim.log == []


def test_a_suspended_tenant_is_403(world):
    services.update_tenant(tenant=world.tenant, is_active=False)
    world.gateway.sync()

    assert_envelope(post(world, json=OK_BODY), 403, "tenant_suspended")


def test_a_key_without_the_scope_is_403(world):
    _key, raw = services.create_api_key(tenant=world.tenant, name="models only", scopes=["models"])
    world.gateway.sync()

    assert_envelope(post(world, json=OK_BODY, key=raw), 403, "insufficient_scope")


def test_an_oversized_body_is_413(world):
    state = world.gateway.state
    saved, state.max_body = state.max_body, 1000
    try:
        response = post(
            world, json={**OK_BODY, "messages": [{"role": "user", "content": "x" * 5000}]}
        )
    finally:
        state.max_body = saved
    assert_envelope(response, 413)
