"""Both adapters against the bundled upstream simulator (tests/simulator_fixtures.py).

The simulator's log is the ground truth for token counts; its fault script drives failures.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from providers.adapters import adapter_for, new_session, transport
from providers.adapters.base import ErrorKind, StreamState, Target, UpstreamError, Usage
from tests.providers.sse_events import split_events

TIMEOUT = aiohttp.ClientTimeout(total=5)
CHAT = {
    "model": "auto",
    "messages": [{"role": "user", "content": "What is the capital of France?"}],
}
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
PROTOCOLS = ["openai", "anthropic"]


@pytest.fixture
async def session():
    client = new_session(connect_timeout=2)
    yield client
    await client.close()


def target(sim: Any, protocol: str, *, api_key: str = "sk-sim-test-key", kind: str = "") -> Target:
    return Target(
        protocol=protocol,
        kind=kind or ("anthropic" if protocol == "anthropic" else "simulator"),
        base_url=f"{sim.url}/v1",
        api_key=api_key,
        model_id="sim-balanced",
    )


def expected_usage(entry: dict[str, Any]) -> Usage:
    return Usage(
        input_tokens=entry["prompt_tokens"] - entry["cached_tokens"],
        cached_tokens=entry["cached_tokens"],
        output_tokens=entry["completion_tokens"],
    )


async def stream_all(
    session: aiohttp.ClientSession, target: Target, state: StreamState, body: dict[str, Any]
) -> list[bytes]:
    stream = adapter_for(target.protocol).stream(
        session, target, body, state, timeout=TIMEOUT, include_usage=False
    )
    return split_events([chunk async for chunk in stream])


async def drain(stream: AsyncIterator[bytes], into: list[bytes]) -> None:
    async for chunk in stream:
        into.extend(split_events([chunk]))


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_chat_usage_matches_the_simulators_count(sim, session, protocol):
    result = await adapter_for(protocol).chat(
        session, target(sim, protocol), dict(CHAT), timeout=TIMEOUT
    )

    [entry] = sim.log
    completion = orjson.loads(result.body)
    assert completion["object"] == "chat.completion"
    assert completion["choices"][0]["message"]["content"].startswith("Simulated answer to:")
    assert completion["usage"]["prompt_tokens"] == entry["prompt_tokens"]
    assert result.usage == expected_usage(entry)
    assert entry["model"] == "sim-balanced"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_stream_text_and_usage_match_the_simulator(sim, session, protocol):
    state = StreamState()

    events = await stream_all(session, target(sim, protocol), state, dict(CHAT))

    [entry] = sim.log
    assert events[-1] == b"data: [DONE]\n\n"
    chunks = [orjson.loads(e[6:]) for e in events[:-1]]
    assert all(chunk["choices"] for chunk in chunks)  # no usage chunk: not asked for
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "".join(state.text_parts)
    assert len(text.split()) == entry["completion_tokens"]
    assert state.usage == expected_usage(entry)
    assert state.finished


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_tool_call_comes_back_in_openai_shape(sim, session, protocol):
    body = {**CHAT, "tools": [TOOL], "tool_choice": "required"}

    result = await adapter_for(protocol).chat(session, target(sim, protocol), body, timeout=TIMEOUT)
    state = StreamState()
    events = await stream_all(session, target(sim, protocol), state, body)

    choice = orjson.loads(result.body)["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert "city" in orjson.loads(call["function"]["arguments"])
    deltas = [orjson.loads(e[6:])["choices"][0]["delta"] for e in events[:-1]]
    streamed = "".join(
        c["function"].get("arguments") or "" for d in deltas for c in d.get("tool_calls", ())
    )
    assert orjson.loads(streamed) == orjson.loads(call["function"]["arguments"])


async def test_azure_deployment_url_is_understood(sim, session):
    azure = Target("openai", "azure_openai", sim.url, "azure-key-0123456789", "sim-eco")

    result = await adapter_for("openai").chat(session, azure, dict(CHAT), timeout=TIMEOUT)

    [entry] = sim.log
    assert entry["path"] == "/openai/deployments/sim-eco/chat/completions"
    assert entry["model"] == "sim-eco"
    assert result.usage == expected_usage(entry)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_rejected_key_is_a_401_without_the_key(sim, session, protocol):
    bad = target(sim, protocol, api_key="sim-bad-0123456789abcdef")

    with pytest.raises(UpstreamError) as caught:
        await adapter_for(protocol).chat(session, bad, dict(CHAT), timeout=TIMEOUT)

    assert (caught.value.kind, caught.value.status) == (ErrorKind.HTTP, 401)
    assert "sim-bad-0123456789abcdef" not in caught.value.message


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    ("fault", "kind", "status"),
    [
        ("429:ra=2", ErrorKind.HTTP, 429),
        ("503", ErrorKind.HTTP, 503),
        ("html", ErrorKind.HTTP, 500),
        ("redirect", ErrorKind.HTTP, 302),
        ("truncated", ErrorKind.PROTOCOL, None),
        ("empty", ErrorKind.PROTOCOL, None),
        ("refuse", ErrorKind.CONNECT, None),
    ],
)
async def test_faults_are_classified(sim, session, protocol, fault, kind, status):
    sim.script([fault])

    with pytest.raises(UpstreamError) as caught:
        await adapter_for(protocol).chat(
            session, target(sim, protocol), dict(CHAT), timeout=TIMEOUT
        )

    assert (caught.value.kind, caught.value.status) == (kind, status)
    if fault.startswith("429"):
        assert caught.value.retry_after == 2
    assert not any(entry["path"] == "/_sim/redirect-target" for entry in sim.log)


async def test_hanging_upstream_times_out(sim, session):
    sim.script(["hang"])

    with pytest.raises(UpstreamError) as caught:
        await adapter_for("openai").chat(
            session, target(sim, "openai"), dict(CHAT), timeout=aiohttp.ClientTimeout(total=0.3)
        )

    assert caught.value.kind == ErrorKind.TIMEOUT


async def test_oversized_answer_is_refused(sim, session, monkeypatch):
    monkeypatch.setattr(transport, "MAX_BODY_BYTES", 256 * 1024)
    sim.script(["oversized:mb=1"])

    with pytest.raises(UpstreamError) as caught:
        await adapter_for("openai").chat(
            session, target(sim, "openai"), dict(CHAT), timeout=TIMEOUT
        )

    assert caught.value.kind == ErrorKind.PROTOCOL


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("fault", ["no-usage", "zero-usage", "bad-usage"])
async def test_missing_zero_or_bad_usage_leaves_usage_to_the_estimate(
    sim, session, protocol, fault
):
    sim.script([fault, fault])

    result = await adapter_for(protocol).chat(
        session, target(sim, protocol), dict(CHAT), timeout=TIMEOUT
    )
    state = StreamState()
    await stream_all(session, target(sim, protocol), state, dict(CHAT))

    assert result.usage is None
    assert state.usage is None
    assert state.finished
    assert state.text_parts


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("fault", ["cut:after=4", "stream-error:after=4"])
async def test_broken_stream_fails_after_the_events_it_had(sim, session, protocol, fault):
    sim.script([fault])
    state = StreamState()
    received = []

    stream = adapter_for(protocol).stream(
        session, target(sim, protocol), dict(CHAT), state, timeout=TIMEOUT, include_usage=True
    )

    with pytest.raises(UpstreamError) as caught:
        await drain(stream, received)

    assert caught.value.kind == ErrorKind.PROTOCOL
    assert received
    assert b"data: [DONE]\n\n" not in received
    assert not state.finished
