"""Cached input tokens are charged once, at the cached rate, through the real request path."""

from __future__ import annotations

from decimal import Decimal

import httpx

from tests.factories import CatalogModelFactory
from tests.world_fixtures import add_provider, platform_key
from usage.models import UsageRecord


def test_cached_input_tokens_are_charged_once_at_the_cached_rate(world):
    caching = add_provider(world.sim.url, "caching", path="/cached/4")
    platform_key(caching, "sim-platform-caching-0007")
    CatalogModelFactory(
        provider=caching,
        model_id="sim-eco",
        name="cached-model",
        input_price_per_mtok=Decimal("2"),
        cached_input_price_per_mtok=Decimal("0.5"),
        output_price_per_mtok=Decimal("8"),
    )
    world.gateway.sync()
    prompt = "a fairly long prompt that the provider has cached before " * 2

    response = httpx.post(
        f"{world.base_url}/chat/completions",
        headers=world.headers(),
        json={"model": "cached-model", "messages": [{"role": "user", "content": prompt}]},
    )

    assert response.status_code == 200
    usage = response.json()["usage"]
    world.gateway.flush_usage()
    record = UsageRecord.objects.get()
    assert record.cached_tokens == 4
    assert record.input_tokens == usage["prompt_tokens"] - 4
    expected = (
        record.input_tokens * Decimal(2) + 4 * Decimal("0.5") + record.output_tokens * Decimal(8)
    ) / 10**6
    assert record.cost_usd == expected.quantize(Decimal("0.00000001"))
