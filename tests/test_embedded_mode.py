"""The embedded default (SQLite, no Redis, filesystem broker) serves completions end to end.

This is what `make run` starts; the rest of the suite runs on PostgreSQL and Redis.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_embedded_default_serves_and_records_a_completion(tmp_path, simulator):
    env = {
        **os.environ,
        "DEBUG": "true",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "REDIS_URL": "",
        "CELERY_BROKER_URL": "",
        "SWITCHYARD_ENCRYPTION_KEYS": "",
        "SWITCHYARD_VAR_DIR": str(tmp_path),
        "SWITCHYARD_SIMULATOR_URL": simulator.url,
        "SWITCHYARD_USAGE_FLUSH_SECONDS": "0.1",
    }

    def manage(*args: str) -> str:
        return subprocess.run(  # noqa: S603 - our own manage.py
            [sys.executable, "manage.py", *args],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    manage("migrate", "--no-input", "-v", "0")
    demo = json.loads(manage("seed_demo", "--json"))
    api_key = demo["tenants"][0]["api_key"]
    port = free_port()
    server = subprocess.Popen(  # noqa: S603 - our own server
        [
            sys.executable,
            "-m",
            "uvicorn",
            "config.asgi:application",
            "--port",
            str(port),
            "--lifespan",
            "on",
            "--log-level",
            "warning",
        ],
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the embedded server did not start"
            assert server.poll() is None, "the embedded server exited"
            time.sleep(0.1)

        response = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            headers={"Authorization": f"Bearer {api_key}"},
            json={"model": "auto", "messages": [{"role": "user", "content": "Hello!"}]},
            timeout=20,
        )
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"]
        assert (tmp_path / "encryption.key").exists()

        deadline = time.monotonic() + 10
        count = 0
        while count == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
            with sqlite3.connect(tmp_path / "db.sqlite3") as db:
                count = db.execute("SELECT count(*) FROM usage_usagerecord").fetchone()[0]
        assert count == 1
        # Written in Django's SQLite conventions, so the ORM reads and filters it back.
        with sqlite3.connect(tmp_path / "db.sqlite3") as db:
            request_id, created_at, cost = db.execute(
                "SELECT request_id, created_at, cost_usd FROM usage_usagerecord"
            ).fetchone()
        assert request_id == response.headers["x-request-id"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?", created_at), created_at
        assert float(cost) == float(response.headers["x-switchyard-cost-usd"])
    finally:
        server.terminate()
        server.wait(15)
