"""Prometheus metrics of providers: `llm_provider_health`, set by each health check."""

from __future__ import annotations

from prometheus_client import Gauge

from providers.choices import HealthStatus

# What a dashboard plots and an alert compares against (`llm_provider_health < 1`).
HEALTH_VALUES = {
    HealthStatus.HEALTHY: 1.0,
    HealthStatus.DEGRADED: 0.5,
    HealthStatus.DOWN: 0.0,
}

# "mostrecent": under prometheus_client's multiprocess mode the value last written by any
# process (a worker's check, a web process's admin action) is the one exported.
PROVIDER_HEALTH = Gauge(
    "llm_provider_health",
    "Provider health from the periodic check: 1 healthy, 0.5 degraded, 0 down.",
    ["provider"],
    multiprocess_mode="mostrecent",
)


def set_provider_health(*, provider_slug: str, status: str) -> None:
    """Export a checked provider's status (healthy, degraded or down)."""
    PROVIDER_HEALTH.labels(provider=provider_slug).set(HEALTH_VALUES[status])
