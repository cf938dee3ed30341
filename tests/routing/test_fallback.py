"""Fallback on SPEC's triggers, never on a 400; bad BYOK keys are marked and reported."""

from __future__ import annotations

import time
from decimal import Decimal

import aiohttp
import httpx
import openai
import pytest

from providers.choices import KeyStatus
from providers.models import ProviderKey
from tests.factories import CatalogModelFactory, ProviderKeyFactory
from tests.world_fixtures import add_provider, platform_key
from usage.choices import Outcome
from usage.models import Alert, UsageRecord

MESSAGES = [{"role": "user", "content": "fallback please"}]


def shared_model(world, fault: str):
    """'shared' served by a failing provider (cheaper, so ranked first) and a healthy one."""
    failing = add_provider(world.sim.url, "failing", path=f"/fault/{fault}")
    platform_key(failing, "sim-platform-failing-0003")
    CatalogModelFactory(
        provider=failing,
        model_id="sim-balanced",
        name="shared",
        input_price_per_mtok=Decimal("0.01"),
        output_price_per_mtok=Decimal("0.01"),
        quality_score=0.9,
        observed_latency_ms=10,
    )
    CatalogModelFactory(
        provider=world.openai,
        model_id="sim-shared",
        name="shared",
        input_price_per_mtok=Decimal("1"),
        output_price_per_mtok=Decimal("4"),
        quality_score=0.5,
        observed_latency_ms=900,
    )
    world.gateway.sync()
    return failing


def post(world, model="shared", **extra):
    return httpx.post(
        f"{world.base_url}/chat/completions",
        headers=world.headers(),
        json={"model": model, "messages": MESSAGES, **extra},
        timeout=30,
    )


@pytest.mark.parametrize("fault", ["500", "503", "429:ra=2", "refuse", "html", "truncated"])
def test_a_failing_provider_falls_back_to_the_next(world, fault):
    shared_model(world, fault)

    response = post(world)

    assert response.status_code == 200, response.text
    assert response.headers["x-switchyard-provider"] == "sim-openai"
    assert response.headers["x-switchyard-attempts"] == "2"
    world.gateway.flush_usage()
    outcomes = list(UsageRecord.objects.order_by("attempt").values_list("attempt", "outcome"))
    assert outcomes[0][0] == 1
    assert outcomes[0][1] != Outcome.SUCCESS
    assert outcomes[1] == (2, Outcome.SUCCESS)


def test_a_timeout_falls_back(world):
    shared_model(world, "hang")
    state = world.gateway.state
    saved = state.timeout
    state.timeout = aiohttp.ClientTimeout(total=5, connect=1, sock_read=0.5)
    try:
        response = post(world)
    finally:
        state.timeout = saved

    assert response.status_code == 200
    world.gateway.flush_usage()
    assert UsageRecord.objects.get(attempt=1).outcome == Outcome.TIMEOUT


def test_a_400_from_the_provider_is_returned_as_is_without_fallback(world):
    shared_model(world, "400")

    response = post(world)

    assert response.status_code == 400
    assert "error" in response.json()
    assert len(world.sim.log) == 1
    world.gateway.flush_usage()
    assert not UsageRecord.objects.filter(outcome=Outcome.SUCCESS).exists()


def test_every_candidate_failing_is_a_502_listing_the_attempts(world):
    world.sim.script(["500", "500", "500", "500", "500", "500"])

    response = post(world, model="sim-balanced")

    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "all_providers_failed"
    assert error["attempts"]
    assert all(a["status"] == 500 for a in error["attempts"])
    world.gateway.flush_usage()
    assert not UsageRecord.objects.filter(outcome=Outcome.SUCCESS).exists()


def test_auto_failover_off_means_one_attempt(world):
    from routing.models import LLMSettings

    LLMSettings.objects.create(tenant=world.tenant, auto_failover=False)
    shared_model(world, "500")

    response = post(world)

    assert response.status_code == 502
    assert len(response.json()["error"]["attempts"]) == 1


def test_a_rejected_byok_key_is_marked_the_owner_alerted_and_the_next_tried(world):
    bad = ProviderKeyFactory(
        provider=world.openai, tenant=world.tenant, secret="sim-bad-tenant-key-9999"
    )
    world.gateway.sync()

    response = post(world, model="balanced")

    assert response.status_code == 200, response.text
    assert response.headers["x-switchyard-provider"] == "sim-anthropic"
    # Marking the key and alerting run after the response, in the background.
    deadline = time.monotonic() + 10
    while not Alert.objects.filter(tenant=world.tenant, kind="key_invalid").exists():
        assert time.monotonic() < deadline, "no key_invalid alert"
        time.sleep(0.05)
    bad.refresh_from_db()
    assert bad.status == KeyStatus.INVALID
    assert "9999" not in bad.last_error
    assert "sim-bad" not in bad.last_error
    assert Alert.objects.filter(tenant=world.tenant, kind="key_invalid").count() == 1


def test_a_provider_that_keeps_failing_cools_down_for_every_request(world):
    failing = shared_model(world, "500")

    for _ in range(3):
        assert post(world).status_code == 200
    world.gateway.run(world.gateway.state.health.refresh(world.gateway.state.snapshot.providers))
    assert failing.pk in world.gateway.state.health.cooling
    world.sim.clear_log()

    response = post(world)

    assert response.headers["x-switchyard-attempts"] == "1"
    assert all(entry["path"].startswith("/v1") for entry in world.sim.log)


def test_an_explicit_model_is_honoured_and_an_alias_follows_the_power_level(world):
    c = openai.OpenAI(base_url=world.base_url, api_key=world.api_key, max_retries=0)

    explicit = c.chat.completions.with_raw_response.create(model="sim-precision", messages=MESSAGES)
    alias = c.chat.completions.with_raw_response.create(model="eco", messages=MESSAGES)

    assert explicit.headers["x-switchyard-model"] == "sim-precision"
    assert alias.headers["x-switchyard-model"] == "sim-eco"


def test_the_end_users_own_key_wins_over_tenant_and_platform_keys(world):
    from tests.factories import EndUserFactory

    alice = EndUserFactory(tenant=world.tenant, external_id="alice")
    ProviderKeyFactory(provider=world.openai, tenant=world.tenant, secret="sim-tenant-key-1111")
    ProviderKeyFactory(
        provider=world.openai,
        tenant=world.tenant,
        end_user=alice,
        scope="user",
        secret="sim-alice-key-2222",
    )
    world.gateway.sync()

    assert post(world, model="sim-eco", user="alice").status_code == 200
    assert post(world, model="sim-eco", user="bob").status_code == 200
    assert post(world, model="sim-eco").status_code == 200

    keys = [entry["api_key"] for entry in world.sim.log]
    assert keys == ["sim-alice-key-2222", "sim-tenant-key-1111", "sim-tenant-key-1111"]
    world.gateway.flush_usage()
    assert UsageRecord.objects.filter(end_user__external_id="bob").count() == 1


def test_platform_keys_are_not_used_when_the_plan_forbids_them(world):
    plan = world.tenant.plan
    plan.allows_platform_keys = False
    plan.save()
    world.gateway.sync()

    response = post(world, model="sim-eco")

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "all_providers_failed"
    assert ProviderKey.objects.count() == 2
