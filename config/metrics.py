"""GET /metrics: django-prometheus's and the gateway's metrics, summed over worker processes.

With PROMETHEUS_MULTIPROC_DIR set (config/serve.py sets it for the web server), every worker
writes its counters and histograms to files there and whichever worker answers the scrape
adds all of them up; without it (one process: tests, `runserver`) the registry in memory is
the whole story. Provider health is read from the database either way (providers/metrics.py).
"""

from __future__ import annotations

import os

from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from providers.metrics import PROVIDER_HEALTH


def registry() -> CollectorRegistry:
    """What a scrape reports: every worker's files in multiprocess mode, else this process."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    combined = CollectorRegistry()
    MultiProcessCollector(combined)
    combined.register(PROVIDER_HEALTH)
    return combined


def metrics(request: HttpRequest) -> HttpResponse:
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)
