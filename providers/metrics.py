"""Prometheus metrics of providers: `llm_provider_health`, read from the database at scrape time.

The periodic check runs in a Celery worker, often on another machine than the web processes
that serve /metrics, and stores its verdict on the Provider row. Reading that row when
Prometheus scrapes makes every web process (and every worker of each) report the same value,
with nothing to share between processes and nothing stale after a worker restarts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from providers.choices import HealthStatus
from providers.models import Provider

logger = logging.getLogger(__name__)

# What a dashboard plots and an alert compares against (`llm_provider_health < 1`).
HEALTH_VALUES = {
    HealthStatus.HEALTHY: 1.0,
    HealthStatus.DEGRADED: 0.5,
    HealthStatus.DOWN: 0.0,
}


class ProviderHealthCollector(Collector):
    """`llm_provider_health{provider}` and the time of each provider's last check.

    Only enabled providers that have been checked: a provider never checked (no platform key,
    e.g. a tenant's own endpoint) has no health to report.
    """

    def collect(self) -> Iterator[GaugeMetricFamily]:
        health = GaugeMetricFamily(
            "llm_provider_health",
            "Provider health from the periodic check: 1 healthy, 0.5 degraded, 0 down.",
            labels=["provider"],
        )
        checked = GaugeMetricFamily(
            "llm_provider_health_checked_timestamp_seconds",
            "When the periodic check last checked the provider (Unix time).",
            labels=["provider"],
        )
        try:
            rows = list(
                Provider.objects.filter(
                    is_enabled=True,
                    health_status__in=list(HEALTH_VALUES),
                    health_checked_at__isnull=False,
                ).values_list("slug", "health_status", "health_checked_at")
            )
        except Exception as exc:  # a scrape must not fail with the database; the rest reports
            logger.warning(
                "provider_health.metrics_unavailable", extra={"error": type(exc).__name__}
            )
            rows = []
        for slug, status, checked_at in rows:
            health.add_metric([slug], HEALTH_VALUES[status])
            checked.add_metric([slug], checked_at.timestamp())
        yield health
        yield checked

    def describe(self) -> list:
        # Registering must not query: an empty description skips the collect() at register.
        return []


PROVIDER_HEALTH = ProviderHealthCollector()
# The single-process registry; config.metrics adds the collector to its multiprocess one.
REGISTRY.register(PROVIDER_HEALTH)
