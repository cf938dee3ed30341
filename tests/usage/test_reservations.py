"""No reservation leaks: failures, fallbacks, timeouts and abandoned streams all settle."""

from __future__ import annotations

import asyncio
import random
import time
from decimal import Decimal

import aiohttp
from django.utils import timezone

from tests.factories import CatalogModelFactory
from tests.usage.limits_helpers import recorded_spend, unthrottled
from tests.world_fixtures import add_provider, platform_key
from usage import counters
from usage.choices import CapScope
from usage.limiter import from_units
from usage.models import SpendingCap, UsageRecord
from usage.periods import period_bounds

MESSAGES = [{"role": "user", "content": "reserve and settle"}]


async def mixed_load(url: str, key: str, n: int) -> None:
    rng = random.Random(7)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        semaphore = asyncio.Semaphore(40)

        async def one(i: int) -> None:
            model = rng.choice(["shared", "shared", "sim-eco", "flaky"])
            stream = i % 3 == 0
            body = {"model": model, "messages": MESSAGES, "max_tokens": 30, "stream": stream}
            async with (
                semaphore,
                session.post(
                    f"{url}/v1/chat/completions",
                    json=body,
                    headers={"Authorization": f"Bearer {key}"},
                ) as response,
            ):
                if stream and i % 2 == 0:
                    await response.content.readany()  # leave mid-stream
                    response.close()
                    return
                await response.read()

        await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)


def test_1000_requests_with_failures_leave_nothing_reserved_and_the_counter_exact(world):
    unthrottled(world)
    SpendingCap.objects.create(
        tenant=world.tenant, scope=CapScope.TENANT, amount_usd=Decimal(1000), mode="hard"
    )
    broken = add_provider(world.sim.url, "broken", path="/fault/500")
    platform_key(broken, "sim-platform-broken-0005")
    slow = add_provider(world.sim.url, "slow", path="/fault/hang")
    platform_key(slow, "sim-platform-slow-0006")
    cheap = {
        "input_price_per_mtok": Decimal("0.01"),
        "output_price_per_mtok": Decimal("0.01"),
        "quality_score": 0.9,
    }
    CatalogModelFactory(provider=broken, model_id="sim-eco", name="shared", **cheap)
    CatalogModelFactory(provider=world.openai, model_id="sim-eco-2", name="shared")
    CatalogModelFactory(provider=slow, model_id="sim-eco", name="flaky", **cheap)
    CatalogModelFactory(provider=world.openai, model_id="sim-eco-3", name="flaky")
    world.gateway.sync()
    state = world.gateway.state
    saved = state.timeout, state.health.failures
    state.timeout = aiohttp.ClientTimeout(total=5, connect=1, sock_read=0.3)
    state.health.failures = 10**9  # keep the failing providers in the chains
    world.sim.script(["ok", "500", "ok", "429", "ok", "cut", "ok"] * 150)
    try:
        asyncio.run(mixed_load(world.gateway.url, world.api_key, 1000))
    finally:
        state.timeout, state.health.failures = saved

    deadline = time.monotonic() + 10
    start, _ = period_bounds(world.tenant.billing_day, timezone.now())
    spent_key, reserved_key = counters.budget_keys("t", str(world.tenant.pk), start.date())
    _credit_key, credit_reserved_key = counters.credit_keys(world.tenant.pk)
    redis = counters.sync_client()
    while int(redis.get(reserved_key) or 0) and time.monotonic() < deadline:
        time.sleep(0.1)
    world.gateway.flush_usage()

    assert int(redis.get(reserved_key)) == 0
    assert int(redis.get(credit_reserved_key)) == 0
    assert UsageRecord.objects.count() >= 1000
    assert from_units(int(redis.get(spent_key))) == recorded_spend(tenant=world.tenant)
