"""Production logs: one JSON object per line, with the request id, and still redacted."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

from config.logging import JSONFormatter
from tests.factories import CatalogModelFactory
from tests.world_fixtures import add_provider, platform_key

FAKE_KEY = "sk-proj-FakeFakeFake0123456789abcdef"
FAKE_API_KEY = "sy-FakeSwitchyardKey0123456789"


def console_handler() -> logging.Handler:
    """The handler settings.LOGGING put on the root logger."""
    handlers = [h for h in logging.getLogger().handlers if isinstance(h.formatter, JSONFormatter)]
    assert handlers, "the suite runs with DEBUG off: its console handler should write JSON"
    return handlers[0]


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """What the configured console handler writes, captured (same formatter, same filters)."""
    console = console_handler()
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(console.formatter)
    for log_filter in console.filters:
        handler.addFilter(log_filter)
    root = logging.getLogger()
    root.addHandler(handler)
    yield buffer
    root.removeHandler(handler)


def records(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_a_line_is_one_json_object_with_the_extras_and_no_secret(log_lines):
    logger = logging.getLogger("switchyard.test")
    try:
        raise ValueError(f"upstream refused {FAKE_KEY}")
    except ValueError:
        logger.exception(
            "provider_key.checked %s",
            FAKE_API_KEY,
            extra={
                "provider": "openai",
                "latency_ms": 12,
                "header": f"Bearer {FAKE_KEY}",
                "nested": {"key": FAKE_KEY, "amount": Decimal("0.5")},
            },
        )

    text = log_lines.getvalue()
    assert text.count("\n") == 1  # the traceback stays inside the one line
    (line,) = records(log_lines)
    assert line["level"] == "ERROR"
    assert line["logger"] == "switchyard.test"
    assert line["message"] == "provider_key.checked [REDACTED]"
    assert line["time"].endswith("+00:00")
    assert line["request_id"] is None  # outside any request
    assert line["provider"] == "openai"
    assert line["latency_ms"] == 12
    assert line["header"] == "[REDACTED]"
    assert line["nested"] == {"key": "[REDACTED]", "amount": "0.5"}
    assert "ValueError: upstream refused [REDACTED]" in line["exc_info"]
    assert FAKE_KEY not in text
    assert FAKE_API_KEY not in text


def test_a_gateway_line_carries_the_x_request_id_of_its_response(world, log_lines):
    failing = add_provider(world.sim.url, "failing", path="/fault/500")
    platform_key(failing, "sim-platform-failing-0003")
    for provider, model_id, price in (
        (failing, "sim-balanced", "0.01"),
        (world.openai, "sim-shared", "1"),
    ):
        CatalogModelFactory(
            provider=provider,
            model_id=model_id,
            name="shared",
            input_price_per_mtok=Decimal(price),
            output_price_per_mtok=Decimal(price),
        )
    world.gateway.sync()

    response = httpx.post(
        f"{world.base_url}/chat/completions",
        headers=world.headers(),
        json={"model": "shared", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )

    assert response.status_code == 200
    failed = [r for r in records(log_lines) if r["message"] == "gateway.attempt_failed"]
    assert len(failed) == 1
    assert failed[0]["request_id"] == response.headers["x-request-id"]
    assert failed[0]["provider"] == "failing"
    assert failed[0]["status"] == 500


def test_a_page_echoes_a_sane_request_id_and_logs_with_it(gateway, log_lines):
    response = httpx.get(
        f"{gateway.url}/no-such-page", headers={"X-Request-ID": "edge-7f3a.01_b"}, timeout=10
    )

    assert response.status_code == 404
    assert response.headers["x-request-id"] == "edge-7f3a.01_b"
    (line,) = [r for r in records(log_lines) if r["logger"] == "django.request"]
    assert line["request_id"] == "edge-7f3a.01_b"
    assert line["status_code"] == 404


@pytest.mark.parametrize("incoming", ["", "x" * 65, "has space", "<script>", "-leading-dash"])
def test_an_odd_request_id_is_replaced_by_a_fresh_one(gateway, incoming):
    headers = {"X-Request-ID": incoming} if incoming else {}

    first = httpx.get(f"{gateway.url}/healthz", headers=headers, timeout=10)
    second = httpx.get(f"{gateway.url}/healthz", headers=headers, timeout=10)

    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert ids[0] != ids[1]


def _log_from_a_fresh_process(**env: str) -> subprocess.CompletedProcess:
    script = (
        "import logging, django; django.setup(); "
        "logging.getLogger('probe').warning('probe.line', extra={'n': 1})"
    )
    return subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
        [sys.executable, "-c", script],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_json_is_the_default_without_debug_and_text_with_it():
    production = _log_from_a_fresh_process(DEBUG="false")
    development = _log_from_a_fresh_process(DEBUG="true")
    chosen = _log_from_a_fresh_process(DEBUG="true", SWITCHYARD_LOG_FORMAT="json")
    wrong = _log_from_a_fresh_process(SWITCHYARD_LOG_FORMAT="xml")

    def probe(result):
        return next(line for line in result.stderr.splitlines() if "probe.line" in line)

    assert json.loads(probe(production))["n"] == 1
    assert probe(development).endswith("WARNING probe probe.line")
    assert json.loads(probe(chosen))["message"] == "probe.line"
    assert wrong.returncode != 0
    assert "SWITCHYARD_LOG_FORMAT must be json or text" in wrong.stderr
