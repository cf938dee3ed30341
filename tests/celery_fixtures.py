"""Pytest plugin: a real Celery worker process on the Redis broker and the test database.

Tests that use it need `transactional_db` (the worker reads committed data through its own
connection). Eager mode is not a substitute: this is the worker CI runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest


class WorkerProcess:
    def __init__(self, *, name: str = "worker", concurrency: int = 1, **env: str) -> None:
        from django.conf import settings
        from django.db import connection

        db = connection.settings_dict
        environment = {
            **os.environ,
            "DATABASE_URL": f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:"
            f"{db['PORT'] or 5432}/{db['NAME']}",
            "REDIS_URL": settings.REDIS_URL,
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            **env,
        }
        self.name = name
        self.process = subprocess.Popen(  # noqa: S603 - our own worker, fixed arguments
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--pool",
                "prefork" if concurrency > 1 else "solo",
                "--concurrency",
                str(concurrency),
                "--hostname",
                f"{name}-{os.getpid()}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                "WARNING",
            ],
            env=environment,
        )
        try:
            self._wait_ready()
        except BaseException:
            # Never left behind: an orphan worker would take later tests' tasks.
            self.stop()
            raise

    def _wait_ready(self) -> None:
        from config.celery import app

        deadline = time.monotonic() + 60  # a loaded CI machine starts workers slowly
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("the Celery worker exited at start")
            replies = app.control.ping(timeout=0.5) or []
            if any(self.name in next(iter(r)) for r in replies):
                return
        raise RuntimeError("the Celery worker did not answer a ping")

    def kill(self) -> None:
        """SIGKILL: the worker gets no chance to ack or clean up."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def celery_worker_process(transactional_db) -> Iterator:
    """Start real workers: `celery_worker_process(name="w1", concurrency=1, **env)`."""
    from config.celery import app

    app.control.purge()
    started: list[WorkerProcess] = []

    def start(**kwargs) -> WorkerProcess:
        worker = WorkerProcess(**kwargs)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
    app.control.purge()
