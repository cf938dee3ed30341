"""The periodic health check, run by a real worker, cools a failing provider down for the
live gateway and brings it back once it answers (the simulator is the upstream)."""

from __future__ import annotations

import time
from decimal import Decimal

import httpx
import redis
from django.conf import settings

from providers import cooldown
from providers.choices import HealthStatus, KeyScope
from providers.models import Provider, ProviderHealthCheck
from providers.tasks import check_health
from tenants import config_version
from tests.factories import CatalogModelFactory
from tests.world_fixtures import add_provider, platform_key

SECRET = "sim-platform-failing-0003"


def run_check() -> None:
    """One providers.check_health through the broker and a worker, until every provider with
    a platform key has its new check recorded."""
    providers = Provider.objects.filter(keys__scope=KeyScope.PLATFORM).distinct().count()
    wanted = ProviderHealthCheck.objects.count() + providers
    check_health.delay()
    deadline = time.monotonic() + 30
    while ProviderHealthCheck.objects.count() < wanted:
        if time.monotonic() > deadline:
            raise AssertionError("the worker did not record the health checks")
        time.sleep(0.1)


def refresh_cool_downs(world) -> None:
    state = world.gateway.state
    world.gateway.run(state.health.refresh(state.snapshot.providers))


def post(world):
    return httpx.post(
        f"{world.base_url}/chat/completions",
        headers=world.headers(),
        json={"model": "shared", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )


def test_a_failing_provider_is_cooled_down_by_the_check_and_returns_when_it_answers(
    world, celery_worker_process
):
    # "shared" is cheapest and best at `failing`, so the router tries it first.
    failing = add_provider(world.sim.url, "failing", path="/fault/500")
    platform_key(failing, SECRET)
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
    celery_worker_process(name="health")

    for _ in range(settings.SWITCHYARD_COOLDOWN_FAILURES):
        run_check()

    failing.refresh_from_db()
    assert failing.health_status == HealthStatus.DOWN
    assert failing.consecutive_failures == settings.SWITCHYARD_COOLDOWN_FAILURES
    assert "500" in failing.health_error
    assert "0003" not in failing.health_error
    checks = ProviderHealthCheck.objects.filter(provider=failing)
    assert checks.count() == settings.SWITCHYARD_COOLDOWN_FAILURES
    assert not checks.filter(ok=True).exists()
    # The other providers answered their checks.
    world.openai.refresh_from_db()
    assert world.openai.health_status == HealthStatus.HEALTHY

    refresh_cool_downs(world)
    world.sim.clear_log()
    response = post(world)

    assert response.status_code == 200, response.text
    assert response.headers["x-switchyard-provider"] == "sim-openai"
    assert response.headers["x-switchyard-attempts"] == "1"
    [call] = [e for e in world.sim.log if e["path"].endswith("/chat/completions")]
    assert (call["path"], call["api_key"]) == ("/v1/chat/completions", "sim-platform-openai-0001")

    # Fixed: the provider answers again. A new snapshot forgets the gateway's local health,
    # but the cool-down lives in Redis, so it is still skipped until the check clears it.
    Provider.objects.filter(pk=failing.pk).update(base_url=f"{world.sim.url}/v1")
    config_version.bump()
    world.gateway.sync()
    refresh_cool_downs(world)  # sync() also empties the gateway's copy of the cool-downs
    assert post(world).headers["x-switchyard-provider"] == "sim-openai"

    run_check()

    failing.refresh_from_db()
    assert failing.health_status == HealthStatus.HEALTHY
    assert failing.consecutive_failures == 0
    client = redis.Redis.from_url(settings.REDIS_URL)
    assert client.exists(*cooldown.keys(failing.pk)) == 0
    client.close()
    refresh_cool_downs(world)
    response = post(world)
    assert response.status_code == 200, response.text
    assert response.headers["x-switchyard-provider"] == "failing"
    assert response.headers["x-switchyard-attempts"] == "1"
