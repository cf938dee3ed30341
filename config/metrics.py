"""GET /metrics: django-prometheus's and the gateway's metrics, summed over worker processes.

With PROMETHEUS_MULTIPROC_DIR set (config/serve.py sets it for the web server), every worker
writes its counters and histograms to files there and whichever worker answers the scrape
adds all of them up; without it (one process: tests, `runserver`) the registry in memory is
the whole story. Provider health is read from the database either way (providers/metrics.py).
"""

from __future__ import annotations

import hmac
import os

from django.conf import settings
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


def _authorized(request: HttpRequest, token: str) -> bool:
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        presented.strip().encode(), token.encode()
    )


def metrics(request: HttpRequest) -> HttpResponse:
    """The scrape; with SWITCHYARD_METRICS_TOKEN set, only for `Authorization: Bearer <it>`
    (metrics name tenants' providers, models and spend: not for the open internet)."""
    token = settings.SWITCHYARD_METRICS_TOKEN
    if token and not _authorized(request, token):
        response = HttpResponse(
            "Unauthorized: /metrics needs the bearer token set in SWITCHYARD_METRICS_TOKEN.\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)
