"""Prometheus metrics of metering and limits."""

from __future__ import annotations

from prometheus_client import Counter

LIMITS_UNAVAILABLE = Counter(
    "switchyard_limits_unavailable_total",
    "Limit checks that could not reach Redis (admit: before a request; settle: after it).",
    ["kind"],
)
