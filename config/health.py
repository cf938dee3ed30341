"""Liveness and readiness: /healthz says the process is up, /readyz that its backends answer."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse

logger = logging.getLogger(__name__)


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _check_broker() -> None:
    from config.celery import app

    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        return
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


def readyz(request: HttpRequest) -> JsonResponse:
    checks = {}
    for name, check in (
        ("database", lambda: connection.ensure_connection()),
        ("cache", lambda: cache.get("readyz-probe")),
        ("broker", _check_broker),
    ):
        try:
            check()
            checks[name] = "ok"
        except Exception:  # readiness reports any failure; it must not raise
            logger.warning("readyz.check_failed", extra={"check": name})
            checks[name] = "unavailable"
    ok = all(v == "ok" for v in checks.values())
    return JsonResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503
    )
