"""Pytest plugin: a live Switchyard ASGI server (uvicorn in a thread) for integration tests.

The server is one per session; each test syncs the gateway's configuration snapshot with
what it wrote to the database (`gateway.sync()`), and starts with a clean provider-health
state. Tests that use it need `transactional_db`: the server reads through its own
database connections, so the test's data must be committed.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from config.asgi import SwitchyardApp
from routing.gateway.state import GatewayState


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveGateway:
    def __init__(self) -> None:
        self.app = SwitchyardApp()
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            lifespan="on",
            log_level="warning",
            loop="asyncio",
            http="httptools",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="gateway", daemon=True)

    @property
    def state(self) -> GatewayState:
        return self.app.gateway.state

    def start(self) -> LiveGateway:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the gateway did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)

    def run(self, coro, timeout: float = 30):
        """Run `coro` on the server's event loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.state.loop).result(timeout)

    def sync(self) -> None:
        """Reload the snapshot now and forget provider health: the test's data is what counts."""

        async def reload() -> None:
            await self.state.reload(await self.state._read_version())

        self.run(reload())
        health = self.state.health
        health.error_rates.clear()
        health.cooling = health.probing = frozenset()
        health._local_cool.clear()
        health._local_probe.clear()
        health._local_fail.clear()

    def wait_for_config(self, timeout: float = 3.0) -> None:
        """Wait until the server has loaded the configuration version now current."""
        from tenants import config_version

        wanted = config_version.read_sync()
        deadline = time.monotonic() + timeout
        while self.state.snapshot.version != wanted:
            if time.monotonic() > deadline:
                raise AssertionError("the gateway did not pick up the configuration change")
            time.sleep(0.02)

    def wait_for_usage_writer(self) -> None:
        """Wait out a batch being written: the test's database flush must not race it."""

        async def idle() -> None:
            async with self.state.sink._lock:
                pass

        self.run(idle())

    def flush_usage(self) -> None:
        """Write queued usage records now."""
        self.run(self.state.sink.flush())


@pytest.fixture(scope="session")
def live_gateway(django_db_setup, django_db_blocker) -> Iterator[LiveGateway]:
    # pytest-django blocks database access process-wide outside tests that ask for it; the
    # server loads its first snapshot now, and later only inside tests that unblock it.
    with django_db_blocker.unblock():
        server = LiveGateway().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def gateway(live_gateway: LiveGateway, transactional_db, sim) -> Iterator[LiveGateway]:
    """The live gateway with the simulator clean; usage of earlier tests never leaks in, nor
    an address refused for their failed authentications (Redis is flushed per test, the
    gateway's in-process list of refused addresses is not)."""
    live_gateway.state.sink.pending.clear()
    live_gateway.app.gateway.auth_failures.blocked.clear()
    yield live_gateway
    live_gateway.state.sink.pending.clear()
    live_gateway.wait_for_usage_writer()


class GatewayProcess:
    """A separate server serving Switchyard on the test database (multi-process tests).

    Started the way Procfile starts production (config/serve.py), with `workers` uvicorn
    workers and a metrics directory of its own, so its /metrics counts only its workers.
    """

    def __init__(self, workers: int = 1, **env: str) -> None:
        import os
        import subprocess
        import sys
        import tempfile

        from django.conf import settings
        from django.db import connection

        db = connection.settings_dict
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._own_metrics_dir = "PROMETHEUS_MULTIPROC_DIR" not in env
        self.metrics_dir = env.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(
            prefix="switchyard-metrics-"
        )
        environment = {
            **os.environ,
            "DATABASE_URL": f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:"
            f"{db['PORT'] or 5432}/{db['NAME']}",
            "REDIS_URL": settings.REDIS_URL,
            "SWITCHYARD_CONFIG_POLL_SECONDS": "0.1",
            "SWITCHYARD_USAGE_FLUSH_SECONDS": "0.1",
            "PROMETHEUS_MULTIPROC_DIR": self.metrics_dir,
            **env,
        }
        self.process = subprocess.Popen(  # noqa: S603 - our own server, fixed arguments
            [
                sys.executable,
                "-m",
                "config.serve",
                "config.asgi:application",
                "--workers",
                str(workers),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--lifespan",
                "on",
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            env=environment,
        )
        try:
            self._wait(workers)
        except BaseException:  # the fixture never sees this object: no one else would stop it
            self.stop()
            raise

    def _wait(self, workers: int) -> None:
        import httpx

        # Workers start side by side; on a busy two-core machine each takes seconds to import.
        deadline = time.monotonic() + 60 * workers
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("the gateway process exited")
            try:
                if (
                    httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
                    and len(self.worker_pids()) >= workers
                ):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the gateway process did not start")

    def worker_pids(self) -> set[int]:
        """Workers that loaded the app: each has written its metrics file by then."""
        from pathlib import Path

        return {int(p.stem.rsplit("_", 1)[1]) for p in Path(self.metrics_dir).glob("counter_*.db")}

    def stop(self) -> None:
        import shutil

        self.process.terminate()
        try:
            self.process.wait(15)
        except Exception:  # a stuck process must not hang the suite
            self.process.kill()
        if self._own_metrics_dir:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)


@pytest.fixture
def gateway_process(gateway):
    """Start extra gateway processes on the test's database: `gateway_process(workers=1, **env)`."""
    started: list[GatewayProcess] = []

    def start(workers: int = 1, **env: str) -> GatewayProcess:
        process = GatewayProcess(workers, **env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
