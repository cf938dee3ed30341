"""check_provider: a models-list call with a platform key, recorded, fed to the breaker."""

from __future__ import annotations

import pytest
import redis
from django.conf import settings
from django.utils import timezone
from prometheus_client import REGISTRY

from providers import cooldown, health
from providers.choices import HealthStatus, KeyScope, KeyStatus
from providers.health import check_provider
from providers.models import ProviderHealthCheck
from tests.factories import ProviderFactory, ProviderKeyFactory

pytestmark = pytest.mark.django_db

PLATFORM_SECRET = "sim-platform-key-0001"


@pytest.fixture
def r():
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


def simulated(sim, slug: str, *, path: str = "", secret: str = PLATFORM_SECRET):
    provider = ProviderFactory(slug=slug, name=slug, base_url=f"{sim.url}{path}/v1")
    ProviderKeyFactory(provider=provider, tenant=None, scope=KeyScope.PLATFORM, secret=secret)
    return provider


def gauge(slug: str) -> float | None:
    return REGISTRY.get_sample_value("llm_provider_health", {"provider": slug})


def test_a_provider_that_answers_is_healthy_and_its_check_is_stored(sim):
    provider = simulated(sim, "up")
    now = timezone.now()

    check = check_provider(provider=provider, now=now)

    assert check.ok
    assert check.latency_ms is not None
    provider.refresh_from_db()
    assert provider.health_status == HealthStatus.HEALTHY
    assert provider.health_checked_at == now
    assert provider.health_latency_ms == check.latency_ms
    assert provider.consecutive_failures == 0
    assert [e["path"] for e in sim.log] == ["/v1/models"]
    assert sim.log[0]["api_key"] == PLATFORM_SECRET
    assert gauge("up") == 1.0


def test_failures_make_it_degraded_then_down_and_cool_it_down(sim, r):
    provider = simulated(sim, "flaky", path="/fault/500")
    _, cool, probe = cooldown.keys(provider.pk)

    statuses = []
    for _ in range(settings.SWITCHYARD_COOLDOWN_FAILURES):
        assert not r.exists(cool)
        check_provider(provider=provider, now=timezone.now())
        statuses.append(provider.health_status)
        assert gauge("flaky") == (0.0 if provider.health_status == HealthStatus.DOWN else 0.5)

    assert statuses == [HealthStatus.DEGRADED] * (settings.SWITCHYARD_COOLDOWN_FAILURES - 1) + [
        HealthStatus.DOWN
    ]
    provider.refresh_from_db()
    assert provider.consecutive_failures == settings.SWITCHYARD_COOLDOWN_FAILURES
    assert "500" in provider.health_error
    assert r.exists(cool)
    assert r.exists(probe)
    assert ProviderHealthCheck.objects.filter(provider=provider, ok=False).count() == 3


def test_failures_a_minute_apart_still_cool_it_down_once_it_is_down(sim, r):
    # The breaker's failure counter forgets after a minute, checks come a minute apart:
    # the provider's own count of failures in a row is what opens the breaker.
    provider = simulated(sim, "slow-to-die", path="/fault/503")
    fail, cool, _ = cooldown.keys(provider.pk)

    for _ in range(settings.SWITCHYARD_COOLDOWN_FAILURES):
        r.delete(fail)  # the window has passed since the previous check
        check_provider(provider=provider, now=timezone.now())

    assert provider.health_status == HealthStatus.DOWN
    assert r.exists(cool)


def test_a_success_ends_a_cool_down_at_once(sim, r):
    provider = simulated(sim, "back")
    fail, cool, probe = cooldown.keys(provider.pk)
    r.set(fail, 2)
    r.set(cool, 1, ex=30)
    r.set(probe, 1, ex=600)
    provider.consecutive_failures = 5
    provider.health_status = HealthStatus.DOWN
    provider.save()

    check_provider(provider=provider, now=timezone.now())

    provider.refresh_from_db()
    assert provider.health_status == HealthStatus.HEALTHY
    assert provider.consecutive_failures == 0
    assert provider.health_error == ""
    assert r.exists(fail, cool, probe) == 0


def test_a_rejected_platform_key_fails_the_check_without_leaking_the_key(sim, r):
    secret = "sim-bad-platform-key-5678"
    provider = simulated(sim, "rejecting", secret=secret)

    check = check_provider(provider=provider, now=timezone.now())

    assert not check.ok
    assert "401" in check.error
    provider.refresh_from_db()
    for text in (check.error, provider.health_error):
        assert secret not in text
        assert "5678" not in text
    assert provider.health_status == HealthStatus.DEGRADED
    # The key's fault, not the provider's (as in the gateway): tenants' own keys may work.
    assert r.exists(*cooldown.keys(provider.pk)) == 0


@pytest.mark.parametrize(
    "key",
    [
        None,
        {"scope": KeyScope.TENANT},
        {"status": KeyStatus.INVALID},
        {"is_enabled": False},
    ],
    ids=["no key", "only a tenant key", "invalid platform key", "disabled platform key"],
)
def test_a_provider_without_a_usable_platform_key_is_skipped(sim, key):
    provider = ProviderFactory(slug="keyless", base_url=f"{sim.url}/v1")
    if key is not None:
        fields = {"tenant": None, "scope": KeyScope.PLATFORM, **key}
        if fields["scope"] == KeyScope.TENANT:
            fields.pop("tenant")
        ProviderKeyFactory(provider=provider, **fields)

    assert check_provider(provider=provider, now=timezone.now()) is None

    provider.refresh_from_db()
    assert provider.health_status == HealthStatus.UNKNOWN
    assert not ProviderHealthCheck.objects.exists()
    assert sim.log == []


def test_a_disabled_provider_is_skipped(sim):
    provider = simulated(sim, "off")
    provider.is_enabled = False
    provider.save()

    assert check_provider(provider=provider, now=timezone.now()) is None
    assert sim.log == []


def test_without_redis_the_check_only_records_health(sim, r, settings):
    # Embedded mode: the gateway's breaker is in its own process memory, out of reach.
    settings.REDIS_URL = ""
    health._redis.cache_clear()
    try:
        provider = simulated(sim, "embedded", path="/fault/500")
        for _ in range(settings.SWITCHYARD_COOLDOWN_FAILURES):
            check_provider(provider=provider, now=timezone.now())
    finally:
        health._redis.cache_clear()

    assert provider.health_status == HealthStatus.DOWN
    assert r.exists(*cooldown.keys(provider.pk)) == 0
