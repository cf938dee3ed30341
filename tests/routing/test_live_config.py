"""A configuration change applies to the next request on the running gateway, no restart."""

from __future__ import annotations

import time

import httpx

from routing.models import LLMSettings
from tenants import config_version


def wait_for_version(gateway, version: str, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while gateway.state.snapshot.version != version:
        assert time.monotonic() < deadline, "the gateway did not pick up the change"
        time.sleep(0.02)


def test_a_power_level_change_is_seen_by_the_next_request_without_restart(world):
    def model_for_auto():
        response = httpx.post(
            f"{world.base_url}/chat/completions",
            headers=world.headers(),
            json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]},
            timeout=10,
        )
        return response.headers["x-switchyard-model"]

    assert model_for_auto() == "sim-eco"  # Balanced by default

    LLMSettings.objects.create(tenant=world.tenant, power_level="precision")
    config_version.bump(tenant_id=world.tenant.pk)  # what every settings service does on commit
    wait_for_version(world.gateway, config_version.read_sync())

    assert model_for_auto() == "anthropic/claude-sim-sonnet"
