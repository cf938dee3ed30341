"""A client that leaves mid-stream: the upstream call is cancelled and the usage still recorded."""

from __future__ import annotations

import time
from decimal import Decimal

import httpx

from tests.factories import CatalogModelFactory
from tests.world_fixtures import add_provider, platform_key
from usage.choices import Outcome
from usage.models import UsageRecord


def test_a_disconnect_mid_stream_cancels_upstream_and_is_recorded(world):
    slow = add_provider(world.sim.url, "slow", path="/fault/endless:ms=20")
    platform_key(slow, "sim-platform-slow-0004")
    CatalogModelFactory(
        provider=slow,
        model_id="sim-eco",
        name="endless",
        input_price_per_mtok=Decimal("1"),
        output_price_per_mtok=Decimal("2"),
    )
    world.gateway.sync()

    with httpx.stream(
        "POST",
        f"{world.base_url}/chat/completions",
        headers=world.headers(),
        timeout=10,
        json={
            "model": "endless",
            "stream": True,
            "messages": [{"role": "user", "content": "go on"}],
        },
    ) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        received = [next(lines) for _ in range(6)]
    assert any(line.startswith("data: ") for line in received)

    deadline = time.monotonic() + 5
    while True:
        world.gateway.flush_usage()
        record = UsageRecord.objects.filter(outcome=Outcome.CLIENT_CANCELLED).first()
        if record or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert record is not None, "the abandoned stream was not recorded"
    assert record.is_stream
    assert record.is_estimated
    assert record.output_tokens > 0
    assert record.cost_usd > 0
    deadline = time.monotonic() + 5
    while world.sim.log[-1].get("completed") is not False and time.monotonic() < deadline:
        time.sleep(0.05)
    assert world.sim.log[-1]["completed"] is False
