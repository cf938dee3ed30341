"""validate_key (sync, httpx) against a local upstream that knows one good key.

validate_key blocks, so it runs in a worker thread while the test's loop serves the upstream.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web

from providers.validation import ValidationResult, validate_key

GOOD_KEY = "sk-good-0123456789abcdef"
BAD_KEY = "sk-bad-0123456789abcdef"
AZURE_STYLE_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"  # no pattern recognises it as a key


@dataclass
class Upstream:
    port: int = 0
    received: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    delay: float = 0.0
    status: int | None = None  # forced answer status

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.received.append((request.method, request.path, dict(request.headers), body))
        if self.delay:
            await asyncio.sleep(self.delay)
        key = request.headers.get("x-api-key") or request.headers.get("api-key")
        if not key and request.headers.get("Authorization", "").startswith("Bearer "):
            key = request.headers["Authorization"][7:]
        anthropic = "anthropic-version" in request.headers
        if self.status is not None:
            return self.error(self.status, "refused", anthropic)
        if key != GOOD_KEY:
            # Like real providers, echo (part of) the key: the message must not carry it on.
            return self.error(401, f"Incorrect API key provided: {key}", anthropic)
        if request.path.endswith("/models"):
            return web.json_response({"data": [{"id": "model-a"}]})
        if request.path.endswith("/messages"):
            return web.json_response(
                {
                    "id": "msg_1",
                    "type": "message",
                    "model": "claude",
                    "content": [{"type": "text", "text": "pong"}],
                    "stop_reason": "max_tokens",
                    "usage": {"input_tokens": 8, "output_tokens": 5},
                }
            )
        return web.json_response(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "pong"}}],
                "usage": {"prompt_tokens": 8, "completion_tokens": 5},
            }
        )

    @staticmethod
    def error(status: int, message: str, anthropic: bool) -> web.Response:
        if anthropic:
            body: dict[str, Any] = {
                "type": "error",
                "error": {"type": "authentication_error", "message": message},
            }
        else:
            body = {"error": {"message": message, "type": "invalid_request_error"}}
        return web.json_response(body, status=status)


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = Upstream()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.port = runner.addresses[0][1]
    yield server
    await runner.cleanup()


async def validate(
    upstream: Upstream,
    *,
    api_key: str = GOOD_KEY,
    protocol: str = "openai",
    kind: str = "openai",
    model_id: str | None = "gpt-4o-mini",
    **kwargs: Any,
) -> ValidationResult:
    return await asyncio.to_thread(
        lambda: validate_key(
            protocol=protocol,
            kind=kind,
            base_url=f"http://127.0.0.1:{upstream.port}/v1",
            api_key=api_key,
            options={},
            model_id=model_id,
            **kwargs,
        )
    )


async def test_a_good_key_is_ok_with_a_five_token_completion(upstream):
    result = await validate(upstream)

    assert (result.ok, result.error) == (True, "")
    assert result.latency_ms >= 0
    [(method, path, headers, body)] = upstream.received
    assert (method, path) == ("POST", "/v1/chat/completions")
    assert headers["Authorization"] == f"Bearer {GOOD_KEY}"
    sent = orjson.loads(body)
    assert sent["model"] == "gpt-4o-mini"
    assert sent["max_completion_tokens"] == 5


async def test_without_a_model_the_models_list_is_the_check(upstream):
    result = await validate(upstream, kind="groq", model_id=None)

    assert result.ok
    assert [(m, p) for m, p, _, _ in upstream.received] == [("GET", "/v1/models")]


@pytest.mark.parametrize("key", [BAD_KEY, AZURE_STYLE_KEY])
async def test_a_rejected_key_is_not_ok_and_the_message_does_not_carry_it(upstream, key):
    result = await validate(upstream, api_key=key)

    assert not result.ok
    assert result.error == "The provider rejected this key (401)."
    assert key not in result.error


@pytest.mark.parametrize(("key", "ok"), [(GOOD_KEY, True), (BAD_KEY, False)])
async def test_anthropic_keys_are_checked_with_a_translated_request(upstream, key, ok):
    result = await validate(
        upstream, api_key=key, protocol="anthropic", kind="anthropic", model_id="claude-3-5-haiku"
    )

    assert result.ok is ok
    [(_, path, headers, body)] = upstream.received
    assert path == "/v1/messages"
    assert headers["x-api-key"] == key
    assert headers["anthropic-version"] == "2023-06-01"
    assert orjson.loads(body)["max_tokens"] == 5
    assert key not in result.error


async def test_a_refused_test_request_still_proves_the_key(upstream):
    upstream.status = 400

    result = await validate(upstream)

    assert result.ok
    assert "test request was refused (400)" in result.error


@pytest.mark.parametrize(("status", "words"), [(404, "check the base URL"), (429, "rate limiting")])
async def test_other_statuses_say_what_to_do(upstream, status, words):
    upstream.status = status

    result = await validate(upstream)

    assert not result.ok
    assert words in result.error


async def test_an_unreachable_provider_is_not_ok_with_a_clear_message():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    result = await asyncio.to_thread(
        lambda: validate_key(
            protocol="openai",
            kind="openai",
            base_url=f"http://127.0.0.1:{port}/v1",
            api_key=GOOD_KEY,
            options={},
            model_id=None,
        )
    )

    assert not result.ok
    assert result.error.startswith("Could not connect to the provider")
    assert GOOD_KEY not in result.error


async def test_a_slow_provider_times_out(upstream):
    upstream.delay = 1.0

    result = await validate(upstream, timeout=0.2)

    assert not result.ok
    assert result.error == "The provider did not answer within 0.2 s."


def test_a_protocol_without_an_adapter_is_reported():
    result = validate_key(
        protocol="gemini",
        kind="gemini",
        base_url="http://127.0.0.1:9/v1beta",
        api_key=GOOD_KEY,
        options={},
        model_id=None,
    )

    assert not result.ok
    assert "not available" in result.error
