"""providers.check_health's body: every provider gets its check; history is kept a week."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from providers import health, tasks
from providers.choices import KeyScope
from providers.models import ProviderHealthCheck
from providers.services import prune_health_checks
from tests.factories import ProviderFactory, ProviderKeyFactory

pytestmark = pytest.mark.django_db


def simulated(sim, slug: str):
    provider = ProviderFactory(slug=slug, name=slug, base_url=f"{sim.url}/v1")
    ProviderKeyFactory(provider=provider, tenant=None, scope=KeyScope.PLATFORM)
    return provider


def test_one_provider_crashing_does_not_stop_the_others(sim, monkeypatch):
    first, second = simulated(sim, "first"), simulated(sim, "second")
    real = health.check_provider

    def check(*, provider, now):
        if provider.pk == first.pk:
            raise RuntimeError("boom")
        return real(provider=provider, now=now)

    monkeypatch.setattr(health, "check_provider", check)

    assert tasks.check_health() == 1
    assert list(ProviderHealthCheck.objects.values_list("provider", flat=True)) == [second.pk]


def test_disabled_providers_are_not_checked(sim):
    simulated(sim, "on")
    off = simulated(sim, "off")
    off.is_enabled = False
    off.save()

    assert tasks.check_health() == 1
    assert not ProviderHealthCheck.objects.filter(provider=off).exists()


def test_the_task_keeps_a_week_of_history():
    provider = ProviderFactory()
    now = timezone.now()
    for days in (30, 8, 7.01, 6.99, 1):
        ProviderHealthCheck.objects.create(
            provider=provider, checked_at=now - timedelta(days=days), ok=True
        )

    tasks.check_health()

    kept = ProviderHealthCheck.objects.values_list("checked_at", flat=True)
    assert sorted(now - at for at in kept) == [timedelta(days=1), timedelta(days=6.99)]


def test_pruning_deletes_in_batches_of_every_provider():
    providers = [ProviderFactory(), ProviderFactory()]
    now = timezone.now()
    for provider in providers:
        ProviderHealthCheck.objects.bulk_create(
            ProviderHealthCheck(
                provider=provider, checked_at=now - timedelta(days=8, minutes=i), ok=False
            )
            for i in range(5)
        )
        ProviderHealthCheck.objects.create(provider=provider, checked_at=now, ok=True)

    assert prune_health_checks(now=now, batch_size=2) == 10
    assert ProviderHealthCheck.objects.count() == 2


def test_checking_one_provider_returns_its_outcome(sim):
    provider = simulated(sim, "one")

    assert tasks.check_provider_health(provider.pk) is True
    assert tasks.check_provider_health(ProviderFactory().pk) is None  # no platform key
    assert tasks.check_provider_health(0) is None
