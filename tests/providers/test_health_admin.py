"""Provider health at a glance in the admin, and "Run health check now"."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from providers.admin import HEALTH_CHECK_LIMIT
from providers.choices import HealthStatus, KeyScope
from providers.models import ProviderHealthCheck
from tests.factories import ProviderFactory, ProviderKeyFactory

LIST_URL = reverse("admin:providers_provider_changelist")
SECRET = "sim-platform-admin-4321"


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


def simulated(sim, slug: str, *, path: str = "", secret: str = SECRET):
    provider = ProviderFactory(slug=slug, name=slug, base_url=f"{sim.url}{path}/v1")
    ProviderKeyFactory(provider=provider, tenant=None, scope=KeyScope.PLATFORM, secret=secret)
    return provider


def run_action(staff_client, providers):
    response = staff_client.post(
        LIST_URL,
        {"action": "run_health_check", "_selected_action": [p.pk for p in providers]},
        follow=True,
    )
    assert response.status_code == 200
    return [str(m) for m in response.context["messages"]]


def test_run_health_check_now_checks_and_reports_each_provider(staff_client, sim):
    up = simulated(sim, "up")
    down = simulated(sim, "down", path="/fault/500")
    keyless = ProviderFactory(slug="keyless", name="keyless")

    messages = run_action(staff_client, [up, down, keyless])

    assert any(m.startswith("up: healthy") for m in messages), messages
    assert any(m.startswith("down: degraded") and "500" in m for m in messages), messages
    assert any(m.startswith("keyless: not checked") for m in messages), messages
    up.refresh_from_db()
    down.refresh_from_db()
    assert (up.health_status, down.health_status) == (HealthStatus.HEALTHY, HealthStatus.DEGRADED)
    assert ProviderHealthCheck.objects.count() == 2
    assert not any("4321" in m for m in messages)


def test_a_rejected_platform_key_is_reported_without_the_key(staff_client, sim):
    secret = "sim-bad-platform-key-8765"
    provider = simulated(sim, "rejecting", secret=secret)

    [message] = run_action(staff_client, [provider])

    assert "401" in message
    assert secret not in message
    assert "8765" not in message


def test_too_many_providers_at_once_are_refused(staff_client):
    providers = [ProviderFactory() for _ in range(HEALTH_CHECK_LIMIT + 1)]

    [message] = run_action(staff_client, providers)

    assert "at most" in message
    assert not ProviderHealthCheck.objects.exists()


def test_the_changelist_shows_health_and_recent_checks_in_a_fixed_number_of_queries(
    staff_client, django_assert_max_num_queries
):
    now = timezone.now()
    for i in range(5):
        provider = ProviderFactory(
            health_status=HealthStatus.DOWN if i % 2 else HealthStatus.HEALTHY,
            consecutive_failures=i,
        )
        ProviderHealthCheck.objects.bulk_create(
            ProviderHealthCheck(
                provider=provider,
                checked_at=now - timedelta(minutes=m),
                ok=bool(m % 2),
                latency_ms=40 + m,
                error="" if m % 2 else "The provider failed to answer (500)",
            )
            for m in range(15)
        )

    staff_client.get(LIST_URL)  # warm the session and content types
    with django_assert_max_num_queries(8):
        response = staff_client.get(LIST_URL)

    assert response.status_code == 200
    html = response.content.decode()
    assert html.count("●") == 5 * 10
    assert "Run health check now" in html


def test_the_change_page_lists_the_last_checks(staff_client):
    provider = ProviderFactory()
    now = timezone.now()
    ProviderHealthCheck.objects.create(
        provider=provider, checked_at=now, ok=False, error="Not found (404): check the base URL."
    )
    ProviderHealthCheck.objects.create(
        provider=provider, checked_at=now - timedelta(minutes=1), ok=True, latency_ms=42
    )

    response = staff_client.get(reverse("admin:providers_provider_change", args=[provider.pk]))

    html = response.content.decode()
    assert "Not found (404): check the base URL." in html
    assert "42 ms" in html
