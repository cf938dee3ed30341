"""Per-plan rate limits hold across web processes, with OpenAI's headers and Retry-After."""

from __future__ import annotations

import asyncio

import httpx

from tenants.models import Plan
from tests.usage.limits_helpers import BODY, fire, run


def on_plan(world, slug: str) -> None:
    world.tenant.plan = Plan.objects.get(slug=slug)
    world.tenant.save()
    world.gateway.sync()


def test_50_concurrent_requests_across_two_processes_let_exactly_10_through(world, gateway_process):
    on_plan(world, "trial")  # 10 requests per minute
    second = gateway_process()

    async def both():
        return await asyncio.gather(
            fire(world.gateway.url, world.api_key, [BODY] * 25),
            fire(second.url, world.api_key, [BODY] * 25),
        )

    first_results, second_results = run(both())
    results = first_results + second_results

    statuses = [status for status, _, _ in results]
    assert statuses.count(200) == 10
    assert statuses.count(429) == 40
    for status, headers, body in results:
        if status == 429:
            assert 1 <= int(headers["Retry-After"]) <= 60
            assert headers["x-ratelimit-limit-requests"] == "10"
            assert headers["x-ratelimit-remaining-requests"] == "0"
            assert b"rate_limit_exceeded" in body


def test_successes_carry_the_ratelimit_headers(world):
    on_plan(world, "trial")

    response = httpx.post(f"{world.base_url}/chat/completions", headers=world.headers(), json=BODY)

    assert response.status_code == 200
    assert response.headers["x-ratelimit-limit-requests"] == "10"
    assert response.headers["x-ratelimit-remaining-requests"] == "9"
    assert response.headers["x-ratelimit-reset-requests"].endswith("s")
    assert response.headers["x-ratelimit-limit-tokens"] == "20000"
    assert int(response.headers["x-ratelimit-remaining-tokens"]) < 20000


def test_a_key_may_have_a_lower_limit_than_its_plan(world):
    from tests.factories import TenantAPIKeyFactory

    key = TenantAPIKeyFactory(tenant=world.tenant, requests_per_minute=2)
    world.gateway.sync()

    statuses = [s for s, _, _ in run(fire(world.gateway.url, key.raw_key, [BODY] * 5))]

    assert statuses.count(200) == 2
    assert statuses.count(429) == 3


def test_streams_count_against_the_rate_limit(world):
    on_plan(world, "trial")
    stream = {**BODY, "stream": True}

    statuses = [s for s, _, _ in run(fire(world.gateway.url, world.api_key, [stream] * 15))]

    assert statuses.count(200) == 10
    assert statuses.count(429) == 5


def test_a_limit_change_applies_to_the_next_request_without_restart(world):
    on_plan(world, "trial")
    assert [s for s, _, _ in run(fire(world.gateway.url, world.api_key, [BODY] * 11))].count(
        429
    ) == 1
    from tenants import services

    services.update_tenant(tenant=world.tenant, plan=Plan.objects.get(slug="enterprise"))
    world.gateway.wait_for_config()

    assert (
        httpx.post(
            f"{world.base_url}/chat/completions", headers=world.headers(), json=BODY
        ).status_code
        == 200
    )
