"""Redis dies mid-run: rate limits fail open, money limits fail closed, nothing answers 500."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import httpx
import pytest

from tenants.models import Plan
from tests.factories import TenantAPIKeyFactory, TenantFactory
from tests.usage.limits_helpers import BODY


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def own_redis():
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    port = free_port()
    process = subprocess.Popen(  # noqa: S603 - a throwaway Redis for this test
        [
            shutil.which("redis-server"),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield process, f"redis://127.0.0.1:{port}/0"
    process.kill()
    process.wait()


def test_redis_killed_mid_run_fails_open_for_rate_limits_and_closed_for_money(
    world, gateway_process, own_redis
):
    redis_process, redis_url = own_redis
    invoiced = TenantFactory(slug="invoiced", plan=Plan.objects.get(slug="enterprise"))
    invoiced_key = TenantAPIKeyFactory(tenant=invoiced).raw_key
    server = gateway_process(REDIS_URL=redis_url)

    def post(key: str) -> httpx.Response:
        return httpx.post(
            f"{server.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json=BODY,
            timeout=20,
        )

    before = [post(world.api_key).status_code, post(invoiced_key).status_code]
    redis_process.kill()
    redis_process.wait()
    after_prepaid = [post(world.api_key) for _ in range(5)]
    after_invoiced = [post(invoiced_key) for _ in range(5)]

    assert before == [200, 200]
    assert [r.status_code for r in after_invoiced] == [200] * 5  # rate limits fail open
    assert [r.status_code for r in after_prepaid] == [503] * 5  # credits guard money: closed
    assert {r.json()["error"]["code"] for r in after_prepaid} == {"limits_unavailable"}
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert 'switchyard_limits_unavailable_total{kind="admit"}' in metrics
