"""Both adapters against a canned upstream (aiohttp.web on 127.0.0.1, a free port).

The first path segment picks the upstream's behaviour, so one server serves every scenario:
`http://127.0.0.1:<port>/<scenario>/v1`. The server records what it received.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from providers.adapters import adapter_for, new_session, transport
from providers.adapters.base import ErrorKind, StreamState, Target, UpstreamError, Usage
from tests.providers.sse_events import split_events

RECORDED = Path(__file__).parent / "recorded"
KEY = "sk-test-canned-0123456789"
TIMEOUT = aiohttp.ClientTimeout(total=5)
CHAT = {"model": "auto", "messages": [{"role": "user", "content": "hello"}]}


def recorded(name: str) -> dict[str, Any]:
    return json.loads((RECORDED / name).read_text())


OPENAI_COMPLETION = orjson.dumps(recorded("openai_chat_completion_cached.json")["response"])
OPENAI_STREAM = [e.encode() + b"\n\n" for e in recorded("openai_stream_tool_call.json")["events"]]
ANTHROPIC = recorded("anthropic_message_tool_use.json")
ANTHROPIC_STREAM = [
    e.encode() + b"\n\n" for e in recorded("anthropic_stream_tool_use.json")["events"]
]


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_json(status: int, message: str, **headers: str) -> web.Response:
    body = {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
    return web.json_response(body, status=status, headers=headers)


async def send_events(
    request: web.Request,
    events: list[bytes],
    *,
    end: bool = True,
    gate: asyncio.Event | None = None,
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for number, event in enumerate(events):
        await response.write(event)
        if gate is not None and number == 0:
            await gate.wait()
    if end:
        await response.write_eof()
    return response


class Upstream:
    """The canned upstream: scenario name -> handler, and everything it received."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.gate = asyncio.Event()
        self.port = 0
        self.scenarios: dict[str, Handler] = {
            "ok": self.ok,
            "azure": self.ok,
            "s500": lambda r: self.respond(error_json(500, "The server had an error")),
            "s429": lambda r: self.respond(
                error_json(429, "Rate limit reached", **{"Retry-After": "7"})
            ),
            "s401": lambda r: self.respond(error_json(401, f"Incorrect API key provided: {KEY}.")),
            "s400": self.bad_request,
            "html500": lambda r: self.respond(
                web.Response(
                    status=500,
                    text="<html><h1>502 Bad Gateway</h1></html>",
                    content_type="text/html",
                )
            ),
            "truncated": self.truncated,
            "badjson": lambda r: self.respond(
                web.Response(
                    body=b'{"id": "chatcmpl-1", "choices": [', content_type="application/json"
                )
            ),
            "empty": lambda r: self.respond(web.Response(status=200)),
            "redirect": lambda r: self.respond(
                web.Response(
                    status=302,
                    headers={"Location": f"http://127.0.0.1:{self.port}/ok/v1/chat/completions"},
                )
            ),
            "slow": self.slow,
            "big": lambda r: self.respond(
                web.Response(body=b'{"choices": []}' + b" " * 4096, content_type="application/json")
            ),
            "bigchunked": self.big_chunked,
            "cut": self.cut,
            "abort": self.abort,
            "gated": self.gated,
            "crlf": self.crlf,
            "anthropic": self.anthropic,
            "anthropic400": lambda r: self.respond(
                web.json_response(
                    {
                        "type": "error",
                        "error": {
                            "type": "invalid_request_error",
                            "message": "messages: roles must alternate",
                        },
                    },
                    status=400,
                )
            ),
            "anthropicerror": self.anthropic_error,
        }

    async def respond(self, response: web.StreamResponse) -> web.StreamResponse:
        return response

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        self.received.append(
            Received(
                request.method,
                request.path,
                dict(request.query),
                dict(request.headers),
                await request.read(),
            )
        )
        scenario = request.path.split("/")[1]
        return await self.scenarios[scenario](request)

    @property
    def last(self) -> Received:
        return self.received[-1]

    async def ok(self, request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/embeddings"):
            return web.json_response(
                {
                    "object": "list",
                    "data": [{"object": "embedding", "index": 0, "embedding": [0.5]}],
                    "model": "text-embedding-3-small",
                    "usage": {"prompt_tokens": 8, "total_tokens": 8},
                }
            )
        if request.path.endswith("/models"):
            return web.json_response(
                {"object": "list", "data": [{"id": "gpt-4o"}, {"id": "gpt-4o-mini"}]}
            )
        body = orjson.loads(await request.read())
        if body.get("stream"):
            return await send_events(request, OPENAI_STREAM)
        return web.Response(body=OPENAI_COMPLETION, content_type="application/json")

    async def bad_request(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {
                "error": {
                    "message": "Invalid value for 'temperature'.",
                    "type": "invalid_request_error",
                    "param": "temperature",
                    "code": "invalid_value",
                }
            },
            status=400,
        )

    async def truncated(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(OPENAI_COMPLETION)
        await response.prepare(request)
        await response.write(OPENAI_COMPLETION[:40])
        request.transport.close()
        return response

    async def slow(self, request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(5)
        return web.Response(body=OPENAI_COMPLETION, content_type="application/json")

    async def big_chunked(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(8):
            await response.write(b" " * 1024)
        await response.write_eof()
        return response

    async def cut(self, request: web.Request) -> web.StreamResponse:
        # A clean end of the HTTP body, but no [DONE]: the upstream gave up mid-answer.
        return await send_events(request, OPENAI_STREAM[:3])

    async def abort(self, request: web.Request) -> web.StreamResponse:
        response = await send_events(request, OPENAI_STREAM[:3], end=False)
        request.transport.close()
        return response

    async def gated(self, request: web.Request) -> web.StreamResponse:
        return await send_events(request, OPENAI_STREAM, gate=self.gate)

    async def crlf(self, request: web.Request) -> web.StreamResponse:
        body = b"".join(OPENAI_STREAM).replace(b"\n", b"\r\n")
        # Odd-sized writes so CR and LF land in different reads.
        return await send_events(request, [body[i : i + 33] for i in range(0, len(body), 33)])

    async def anthropic(self, request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/models"):
            return web.json_response(
                {"data": [{"id": "claude-3-5-haiku-20241022", "type": "model"}], "has_more": False}
            )
        body = orjson.loads(await request.read())
        if body.get("stream"):
            return await send_events(request, ANTHROPIC_STREAM)
        return web.json_response(ANTHROPIC["response"])

    async def anthropic_error(self, request: web.Request) -> web.StreamResponse:
        error = (
            b"event: error\n"
            b'data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
        )
        return await send_events(request, [*ANTHROPIC_STREAM[:4], error])


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = Upstream()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.dispatch)
    runner = web.AppRunner(app, shutdown_timeout=0.1, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.port = runner.addresses[0][1]
    yield server
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    client = new_session(connect_timeout=2)
    yield client
    await client.close()


def openai_target(upstream: Upstream, scenario: str, **overrides: Any) -> Target:
    values: dict[str, Any] = {
        "protocol": "openai",
        "kind": "openai",
        "base_url": f"http://127.0.0.1:{upstream.port}/{scenario}/v1",
        "api_key": KEY,
        "model_id": "gpt-4o-mini",
    }
    values.update(overrides)
    return Target(**values)


def anthropic_target(upstream: Upstream, scenario: str = "anthropic") -> Target:
    return Target(
        protocol="anthropic",
        kind="anthropic",
        base_url=f"http://127.0.0.1:{upstream.port}/{scenario}/v1",
        api_key=KEY,
        model_id="claude-3-5-sonnet-20241022",
    )


async def chat_error(
    session: aiohttp.ClientSession, target: Target, **kwargs: Any
) -> UpstreamError:
    with pytest.raises(UpstreamError) as caught:
        await adapter_for(target.protocol).chat(
            session, target, dict(CHAT), timeout=kwargs.get("timeout", TIMEOUT)
        )
    return caught.value


async def collect(
    session: aiohttp.ClientSession, target: Target, state: StreamState, *, include_usage: bool
) -> list[bytes]:
    stream = adapter_for(target.protocol).stream(
        session, target, dict(CHAT), state, timeout=TIMEOUT, include_usage=include_usage
    )
    return split_events([chunk async for chunk in stream])


async def drain(stream: AsyncIterator[bytes], into: list[bytes]) -> None:
    """Append events as they arrive, so what came before a failure stays visible."""
    async for chunk in stream:
        into.extend(split_events([chunk]))


# --- OpenAI-compatible: success paths ---------------------------------------------------------


async def test_chat_returns_the_upstream_bytes_and_usage(upstream, session):
    result = await adapter_for("openai").chat(
        session, openai_target(upstream, "ok"), dict(CHAT), timeout=TIMEOUT
    )

    assert result.body == OPENAI_COMPLETION
    assert result.usage == Usage(input_tokens=93, cached_tokens=1024, output_tokens=46)
    sent = upstream.last
    assert sent.path == "/ok/v1/chat/completions"
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.headers["User-Agent"] == "switchyard"
    assert sent.json["model"] == "gpt-4o-mini"


async def test_azure_url_and_headers_reach_the_upstream(upstream, session):
    azure = openai_target(
        upstream,
        "azure",
        kind="azure_openai",
        base_url=f"http://127.0.0.1:{upstream.port}/azure",
        model_id="my-deployment",
        options={"api_version": "2024-06-01"},
    )

    await adapter_for("openai").chat(session, azure, dict(CHAT), timeout=TIMEOUT)

    sent = upstream.last
    assert sent.path == "/azure/openai/deployments/my-deployment/chat/completions"
    assert sent.query == {"api-version": "2024-06-01"}
    assert sent.headers["api-key"] == KEY
    assert "Authorization" not in sent.headers
    assert "model" not in sent.json


async def test_embeddings_and_models(upstream, session):
    target = openai_target(upstream, "ok", model_id="text-embedding-3-small")
    adapter = adapter_for("openai")

    result = await adapter.embeddings(
        session, target, {"model": "x", "input": "hello"}, timeout=TIMEOUT
    )
    models = await adapter.list_models(session, target, timeout=TIMEOUT)

    assert result.usage == Usage(input_tokens=8, cached_tokens=0, output_tokens=0)
    assert upstream.received[0].json["model"] == "text-embedding-3-small"
    assert models == ["gpt-4o", "gpt-4o-mini"]
    assert upstream.last.method == "GET"


# --- OpenAI-compatible: failure classification ------------------------------------------------


async def test_500_is_an_http_error_without_a_body_for_the_caller(upstream, session):
    error = await chat_error(session, openai_target(upstream, "s500"))

    assert (error.kind, error.status, error.body) == (ErrorKind.HTTP, 500, None)
    assert error.message == "HTTP 500: The server had an error"


async def test_429_carries_retry_after(upstream, session):
    error = await chat_error(session, openai_target(upstream, "s429"))

    assert (error.kind, error.status, error.retry_after) == (ErrorKind.HTTP, 429, 7.0)


async def test_401_message_does_not_carry_the_key(upstream, session):
    error = await chat_error(session, openai_target(upstream, "s401"))

    assert (error.kind, error.status) == (ErrorKind.HTTP, 401)
    assert KEY not in error.message
    assert KEY not in error.body.decode()
    assert "Incorrect API key provided" in error.message


async def test_400_body_is_kept_in_openais_envelope(upstream, session):
    error = await chat_error(session, openai_target(upstream, "s400"))

    assert (error.kind, error.status) == (ErrorKind.HTTP, 400)
    assert orjson.loads(error.body) == {
        "error": {
            "message": "Invalid value for 'temperature'.",
            "type": "invalid_request_error",
            "param": "temperature",
            "code": "invalid_value",
        }
    }


async def test_html_500_is_an_http_error_with_a_short_message(upstream, session):
    error = await chat_error(session, openai_target(upstream, "html500"))

    assert (error.kind, error.status) == (ErrorKind.HTTP, 500)
    assert error.message == "HTTP 500: HTML error page"


@pytest.mark.parametrize(
    ("scenario", "message"),
    [
        ("truncated", "response body cut short"),
        ("badjson", "malformed or truncated JSON"),
        ("empty", "empty response body"),
    ],
)
async def test_unusable_200_is_a_protocol_error(upstream, session, scenario, message):
    error = await chat_error(session, openai_target(upstream, scenario))

    assert (error.kind, error.message) == (ErrorKind.PROTOCOL, message)


async def test_redirect_is_not_followed(upstream, session):
    error = await chat_error(session, openai_target(upstream, "redirect"))

    assert (error.kind, error.status) == (ErrorKind.HTTP, 302)
    assert [r.path for r in upstream.received] == ["/redirect/v1/chat/completions"]


async def test_connection_refused_is_a_connect_error(session):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    target = Target("openai", "openai", f"http://127.0.0.1:{port}/v1", KEY, "gpt-4o-mini")

    with pytest.raises(UpstreamError) as caught:
        await adapter_for("openai").chat(session, target, dict(CHAT), timeout=TIMEOUT)

    assert caught.value.kind == ErrorKind.CONNECT
    assert KEY not in caught.value.message


async def test_slow_upstream_is_a_timeout(upstream, session):
    error = await chat_error(
        session, openai_target(upstream, "slow"), timeout=aiohttp.ClientTimeout(total=0.2)
    )

    assert error.kind == ErrorKind.TIMEOUT


@pytest.mark.parametrize("scenario", ["big", "bigchunked"])
async def test_oversized_body_is_refused(upstream, session, monkeypatch, scenario):
    monkeypatch.setattr(transport, "MAX_BODY_BYTES", 1024)

    error = await chat_error(session, openai_target(upstream, scenario))

    assert error.kind == ErrorKind.PROTOCOL
    assert error.message == "response body over 1024 bytes"


# --- OpenAI-compatible: streams ---------------------------------------------------------------


async def test_stream_passes_events_through_and_asks_upstream_for_usage(upstream, session):
    state = StreamState()

    events = await collect(session, openai_target(upstream, "ok"), state, include_usage=True)

    assert events == OPENAI_STREAM
    assert upstream.last.json["stream"] is True
    assert upstream.last.json["stream_options"] == {"include_usage": True}
    assert state.finished
    assert state.usage == Usage(input_tokens=129, cached_tokens=1152, output_tokens=22)


async def test_stream_without_include_usage_strips_only_the_usage_chunk(upstream, session):
    state = StreamState()

    events = await collect(session, openai_target(upstream, "ok"), state, include_usage=False)

    assert events == [e for e in OPENAI_STREAM if b'"choices":[]' not in e]
    assert len(events) == len(OPENAI_STREAM) - 1
    assert state.usage == Usage(input_tokens=129, cached_tokens=1152, output_tokens=22)


async def test_crlf_stream_cut_at_odd_places_is_relayed_with_lf(upstream, session):
    events = await collect(
        session, openai_target(upstream, "crlf"), StreamState(), include_usage=True
    )

    assert events == OPENAI_STREAM


async def test_each_event_is_yielded_before_the_upstream_sends_the_next(upstream, session):
    stream = adapter_for("openai").stream(
        session,
        openai_target(upstream, "gated"),
        dict(CHAT),
        StreamState(),
        timeout=TIMEOUT,
        include_usage=True,
    )

    first = await asyncio.wait_for(anext(stream), 2)
    upstream.gate.set()
    rest = split_events([chunk async for chunk in stream])

    assert [first, *rest] == OPENAI_STREAM


@pytest.mark.parametrize("scenario", ["cut", "abort"])
async def test_stream_cut_before_done_fails_after_the_events_it_had(upstream, session, scenario):
    state = StreamState()
    stream = adapter_for("openai").stream(
        session,
        openai_target(upstream, scenario),
        dict(CHAT),
        state,
        timeout=TIMEOUT,
        include_usage=True,
    )
    received = []

    with pytest.raises(UpstreamError) as caught:
        await drain(stream, received)

    assert received == OPENAI_STREAM[:3]
    assert caught.value.kind == ErrorKind.PROTOCOL
    assert "stream ended early" in caught.value.message
    assert not state.finished
    assert state.text_parts == ["Let me", " check"]


async def test_stream_that_fails_to_start_raises_before_any_event(upstream, session):
    stream = adapter_for("openai").stream(
        session,
        openai_target(upstream, "s429"),
        dict(CHAT),
        StreamState(),
        timeout=TIMEOUT,
        include_usage=True,
    )

    with pytest.raises(UpstreamError) as caught:
        await anext(stream)

    assert (caught.value.status, caught.value.retry_after) == (429, 7.0)


async def test_streamed_request_answered_with_json_is_a_protocol_error(upstream, session):
    stream = adapter_for("openai").stream(
        session,
        openai_target(upstream, "badjson"),
        dict(CHAT),
        StreamState(),
        timeout=TIMEOUT,
        include_usage=True,
    )

    with pytest.raises(UpstreamError) as caught:
        await anext(stream)

    assert caught.value.kind == ErrorKind.PROTOCOL


# --- Anthropic end to end ---------------------------------------------------------------------


async def test_anthropic_chat_is_translated_both_ways(upstream, session):
    result = await adapter_for("anthropic").chat(
        session, anthropic_target(upstream), ANTHROPIC["openai_request"], timeout=TIMEOUT
    )

    sent = upstream.last
    assert sent.path == "/anthropic/v1/messages"
    assert sent.headers["x-api-key"] == KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in sent.headers
    assert sent.json == ANTHROPIC["expected_anthropic_request"]
    completion = orjson.loads(result.body)
    expected = ANTHROPIC["expected_openai_response"]
    assert completion["created"] > 0
    assert {**completion, "created": expected["created"]} == expected
    assert result.usage == Usage(input_tokens=592, cached_tokens=1800, output_tokens=89)


async def test_anthropic_stream_is_translated_to_openai_chunks(upstream, session):
    state = StreamState()

    events = await collect(session, anthropic_target(upstream), state, include_usage=True)

    assert upstream.last.json["stream"] is True
    assert events[-1] == b"data: [DONE]\n\n"
    chunks = [orjson.loads(e[6:]) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert chunks[-1]["usage"]["prompt_tokens"] == 1496
    assert state.usage == Usage(input_tokens=472, cached_tokens=1024, output_tokens=89)
    assert state.finished


async def test_anthropic_400_reaches_the_caller_in_openais_envelope(upstream, session):
    error = await chat_error(session, anthropic_target(upstream, "anthropic400"))

    assert (error.kind, error.status) == (ErrorKind.HTTP, 400)
    assert orjson.loads(error.body)["error"] == {
        "message": "messages: roles must alternate",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


async def test_anthropic_error_event_mid_stream_raises_after_the_chunks(upstream, session):
    stream = adapter_for("anthropic").stream(
        session,
        anthropic_target(upstream, "anthropicerror"),
        dict(CHAT),
        StreamState(),
        timeout=TIMEOUT,
        include_usage=False,
    )
    received = []

    with pytest.raises(UpstreamError) as caught:
        await drain(stream, received)

    assert len(received) == 2
    assert caught.value.message == "stream error: overloaded_error: Overloaded"


async def test_anthropic_models_and_no_embeddings(upstream, session):
    adapter = adapter_for("anthropic")
    target = anthropic_target(upstream)

    models = await adapter.list_models(session, target, timeout=TIMEOUT)
    with pytest.raises(UpstreamError) as caught:
        await adapter.embeddings(session, target, {"input": "x"}, timeout=TIMEOUT)

    assert models == ["claude-3-5-haiku-20241022"]
    assert upstream.last.headers["x-api-key"] == KEY
    assert upstream.last.query == {"limit": "1000"}
    assert caught.value.status == 400


def test_unknown_protocol_has_no_adapter():
    with pytest.raises(LookupError):
        adapter_for("gemini")
