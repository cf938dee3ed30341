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


def _check_database() -> None:
    # A query, not ensure_connection(): a kept-alive connection (CONN_MAX_AGE) to a database
    # that has since gone away still looks connected until it is used.
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def readyz(request: HttpRequest) -> JsonResponse:
    checks = {}
    for name, check in (
        ("database", _check_database),
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
