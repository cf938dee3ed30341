"""/healthz says the process is up; /readyz says whether its database and cache answer.

The server under test reaches PostgreSQL or Redis through a proxy the test cuts, so the
backend goes away for that server only, connections it kept open included.
"""

from __future__ import annotations

from urllib.parse import urlparse

import httpx
import pytest
from django.conf import settings
from django.db import connection

from tests.ops.tcp_proxy import TCPProxy


@pytest.fixture
def proxies():
    started: list[TCPProxy] = []

    def start(target_port: int) -> TCPProxy:
        proxy = TCPProxy(target_port).start()
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.cut()


def get(server, path: str) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", timeout=15)


def test_readyz_answers_200_when_everything_answers(gateway):
    response = httpx.get(f"{gateway.url}/readyz", timeout=10)

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "cache": "ok", "broker": "ok"},
    }


def test_readyz_fails_while_the_database_is_unreachable_and_recovers(gateway_process, proxies):
    db = connection.settings_dict
    proxy = proxies(int(db["PORT"] or 5432))
    server = gateway_process(
        DATABASE_URL=f"postgres://{db['USER'] or 'postgres'}@127.0.0.1:{proxy.port}/{db['NAME']}"
    )
    assert get(server, "/readyz").status_code == 200  # its kept-alive connection is open now

    proxy.cut()
    down = get(server, "/readyz")

    assert down.status_code == 503
    assert down.json()["status"] == "unavailable"
    assert down.json()["checks"]["database"] == "unavailable"
    assert down.json()["checks"]["cache"] == "ok"
    assert get(server, "/healthz").status_code == 200  # up, only not ready

    proxy.start()
    assert get(server, "/readyz").status_code == 200


def test_readyz_fails_while_redis_is_unreachable(gateway_process, proxies):
    redis_url = urlparse(settings.REDIS_URL)
    proxy = proxies(redis_url.port or 6379)
    server = gateway_process(REDIS_URL=f"redis://127.0.0.1:{proxy.port}{redis_url.path}")
    assert get(server, "/readyz").status_code == 200

    proxy.cut()
    down = get(server, "/readyz")

    assert down.status_code == 503
    assert down.json()["checks"]["cache"] == "unavailable"
    assert down.json()["checks"]["database"] == "ok"
    assert get(server, "/healthz").status_code == 200
