"""The adapters' pure functions against recorded wire shapes (tests/providers/recorded/).

No network and no database: request building, response and stream translation, usage mapping.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from providers.adapters import anthropic, openai_compatible
from providers.adapters.base import ErrorKind, StreamState, Target, UpstreamError, Usage
from providers.adapters.errors import http_error, parse_retry_after
from providers.adapters.sse import EventSplitter, event_data

RECORDED = Path(__file__).parent / "recorded"


def recorded(name: str) -> dict[str, Any]:
    return json.loads((RECORDED / name).read_text())


def usage_of(expected: dict[str, int]) -> Usage:
    return Usage(**expected)


def sse_body(events: list[str], *, crlf: bool = False) -> bytes:
    body = "".join(event + "\n\n" for event in events)
    return (body.replace("\n", "\r\n") if crlf else body).encode()


def cuts(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def target(kind: str = "openai", **overrides: Any) -> Target:
    values: dict[str, Any] = {
        "protocol": "openai",
        "kind": kind,
        "base_url": "https://api.example.com/v1",
        "api_key": "sk-test-0123456789abcdef",
        "model_id": "gpt-4o-mini",
        "options": {},
    }
    values.update(overrides)
    return Target(**values)


def payloads(events: list[bytes]) -> list[Any]:
    out = []
    for event in events:
        assert event.startswith(b"data: ")
        assert event.endswith(b"\n\n")
        data = event[6:-2]
        out.append(data.decode() if data == b"[DONE]" else orjson.loads(data))
    return out


# --- OpenAI: requests ---------------------------------------------------------------------------


def test_chat_request_sets_the_upstream_model_and_leaves_the_callers_body_alone():
    body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "stream": True}

    url, headers, data = openai_compatible.build_chat_request(target(), body, stream=False)

    assert url == "https://api.example.com/v1/chat/completions"
    assert headers["Authorization"] == "Bearer sk-test-0123456789abcdef"
    assert headers["Content-Type"] == "application/json"
    sent = orjson.loads(data)
    assert sent["model"] == "gpt-4o-mini"
    assert "stream" not in sent
    assert body["model"] == "auto"


def test_streamed_request_always_asks_for_usage_and_keeps_other_stream_options():
    body = {"messages": [], "stream_options": {"include_usage": False, "other": 1}}

    _, _, data = openai_compatible.build_chat_request(target(), body, stream=True)

    sent = orjson.loads(data)
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True, "other": 1}
    assert body["stream_options"] == {"include_usage": False, "other": 1}


def test_azure_puts_the_deployment_in_the_url_and_the_key_in_api_key():
    azure = target(
        "azure_openai",
        base_url="https://res.openai.azure.com",
        model_id="prod gpt4o",
        options={"api_version": "2025-01-01-preview"},
    )

    url, headers, data = openai_compatible.build_chat_request(
        azure, {"model": "x", "messages": []}, stream=False
    )

    assert url == (
        "https://res.openai.azure.com/openai/deployments/prod%20gpt4o/chat/completions"
        "?api-version=2025-01-01-preview"
    )
    assert headers["api-key"] == "sk-test-0123456789abcdef"
    assert "Authorization" not in headers
    assert "model" not in orjson.loads(data)


def test_azure_without_api_version_uses_the_default():
    azure = target("azure_openai", base_url="https://res.openai.azure.com")

    url, _, _ = openai_compatible.build_embeddings_request(azure, {"input": "x"})

    assert url.endswith(
        "/openai/deployments/gpt-4o-mini/embeddings?api-version="
        + openai_compatible.DEFAULT_AZURE_API_VERSION
    )


@pytest.mark.parametrize("kind", ["ollama", "vllm", "lmstudio"])
def test_local_servers_send_no_auth_without_a_key_and_bearer_with_one(kind):
    assert "Authorization" not in openai_compatible.request_headers(kind, "")
    assert openai_compatible.request_headers(kind, "local-key")["Authorization"] == (
        "Bearer local-key"
    )


def test_header_sets_are_built_once_per_key():
    first = openai_compatible.request_headers("groq", "gsk-one-0123456789")
    assert openai_compatible.request_headers("groq", "gsk-one-0123456789") is first
    assert openai_compatible.request_headers("groq", "gsk-two-0123456789") is not first


# --- OpenAI: responses and usage --------------------------------------------------------------


def test_chat_response_bytes_pass_through_unchanged_with_cached_tokens_counted_once():
    fixture = recorded("openai_chat_completion_cached.json")
    raw = orjson.dumps(fixture["response"])

    result = openai_compatible.parse_chat_response(raw)

    assert result.body is raw
    assert result.usage == usage_of(fixture["expected_usage"])
    usage = result.usage
    assert usage.input_tokens + usage.cached_tokens == fixture["response"]["usage"]["prompt_tokens"]


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (None, None),
        ("12", None),
        ({"prompt_tokens": "10", "completion_tokens": 2}, None),
        ({"prompt_tokens": 10}, None),
        ({"prompt_tokens": -1, "completion_tokens": 2}, None),
        ({"prompt_tokens": True, "completion_tokens": 2}, None),
        ({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}, None),
        ({"prompt_tokens": 10, "completion_tokens": 2}, Usage(10, 0, 2)),
        (
            {"prompt_tokens": 10, "completion_tokens": 2, "prompt_tokens_details": None},
            Usage(10, 0, 2),
        ),
        (
            {"prompt_tokens": 10, "completion_tokens": 2, "prompt_tokens_details": {}},
            Usage(10, 0, 2),
        ),
        # More cached than prompt (a broken upstream): input never goes negative.
        (
            {
                "prompt_tokens": 10,
                "completion_tokens": 2,
                "prompt_tokens_details": {"cached_tokens": 50},
            },
            Usage(0, 10, 2),
        ),
        # DeepSeek reports its cache hits beside prompt_tokens.
        (
            {"prompt_tokens": 100, "completion_tokens": 5, "prompt_cache_hit_tokens": 64},
            Usage(36, 64, 5),
        ),
    ],
)
def test_usage_is_none_when_missing_malformed_or_zero(usage, expected):
    assert openai_compatible.parse_usage(usage) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "empty response body"),
        (b"<html><body>Bad gateway</body></html>", "HTML instead of JSON"),
        (b'{"id": "chatcmpl-1", "choices": [', "malformed or truncated JSON"),
        (b'{"id": "chatcmpl-1"}', "2xx answer without 'choices'"),
        (b'{"error": {"message": "overloaded"}}', "error in a 2xx answer: overloaded"),
    ],
)
def test_unusable_2xx_bodies_are_protocol_errors(raw, message):
    with pytest.raises(UpstreamError) as caught:
        openai_compatible.parse_chat_response(raw)
    assert caught.value.kind == ErrorKind.PROTOCOL
    assert caught.value.message == message


def test_embeddings_usage_has_no_completion_tokens():
    raw = orjson.dumps(
        {"object": "list", "data": [{"embedding": [0.1]}], "usage": {"prompt_tokens": 8}}
    )

    assert openai_compatible.parse_embeddings_response(raw).usage == Usage(8, 0, 0)


# --- OpenAI: streams --------------------------------------------------------------------------


@pytest.mark.parametrize("cut_size", [1, 7, 64, 100_000])
@pytest.mark.parametrize("crlf", [False, True])
def test_recorded_stream_relays_every_event_and_records_text_and_usage(cut_size, crlf):
    fixture = recorded("openai_stream_tool_call.json")
    state = StreamState()
    relay = openai_compatible.StreamRelay(state, include_usage=True)

    out = []
    for piece in cuts(sse_body(fixture["events"], crlf=crlf), cut_size):
        out.extend(relay.feed(piece))
    out.extend(relay.close())

    assert [event.decode() for event in out] == [e + "\n\n" for e in fixture["events"]]
    assert state.finished
    assert state.usage == usage_of(fixture["expected_usage"])
    assert "".join(state.text_parts) == fixture["expected_text"]
    assert state.chunks == len(fixture["events"]) - 1


def test_usage_chunk_is_recorded_but_not_relayed_unless_asked_for():
    fixture = recorded("openai_stream_tool_call.json")
    state = StreamState()
    relay = openai_compatible.StreamRelay(state, include_usage=False)

    out = relay.feed(sse_body(fixture["events"])) + relay.close()

    relayed = payloads(out)
    assert relayed[-1] == "[DONE]"
    assert all(chunk["choices"] for chunk in relayed[:-1])
    assert len(relayed) == len(fixture["events"]) - 1
    assert state.usage == usage_of(fixture["expected_usage"])


def test_stream_without_done_is_an_error_after_the_events_it_had():
    fixture = recorded("openai_stream_tool_call.json")
    relay = openai_compatible.StreamRelay(StreamState(), include_usage=True)

    out = relay.feed(sse_body(fixture["events"][:3]))

    assert len(out) == 3
    with pytest.raises(UpstreamError) as caught:
        relay.close()
    assert caught.value.kind == ErrorKind.PROTOCOL
    assert caught.value.message == "stream ended early"


def test_comments_are_dropped_and_a_final_event_without_blank_line_counts():
    state = StreamState()
    relay = openai_compatible.StreamRelay(state, include_usage=False)
    chunk = b'{"choices":[{"index":0,"delta":{"content":"hi"}}]}'

    out = relay.feed(b": OPENROUTER PROCESSING\n\ndata: " + chunk + b"\n\ndata: [DONE]")
    out += relay.close()

    assert out == [b"data: " + chunk + b"\n\n", b"data: [DONE]\n\n"]
    assert state.text_parts == ["hi"]


def test_error_event_mid_stream_is_an_upstream_error():
    relay = openai_compatible.StreamRelay(StreamState(), include_usage=False)

    with pytest.raises(UpstreamError) as caught:
        relay.feed(b'data: {"error": {"message": "model overloaded"}}\n\n')
    assert caught.value.kind == ErrorKind.PROTOCOL
    assert "model overloaded" in caught.value.message


def test_sse_splitter_joins_a_crlf_cut_between_reads():
    splitter = EventSplitter()

    assert splitter.feed(b"data: 1\r") == []
    assert splitter.feed(b"\n\r") == []
    assert splitter.feed(b"\nevent: x\ndata: 2\ndata: 3\n\n") == [
        b"data: 1",
        b"event: x\ndata: 2\ndata: 3",
    ]
    assert event_data(b"event: x\ndata: 2\ndata:3") == b"2\n3"
    assert event_data(b": keep-alive") is None


# --- Anthropic: requests ----------------------------------------------------------------------


def test_openai_request_translates_to_anthropic_messages():
    fixture = recorded("anthropic_message_tool_use.json")

    translated = anthropic.to_anthropic_request(
        fixture["openai_request"], fixture["model_id"], stream=False
    )

    assert translated == fixture["expected_anthropic_request"]


def test_anthropic_request_headers_url_and_default_max_tokens():
    claude = target(
        "anthropic",
        protocol="anthropic",
        base_url="https://api.anthropic.com/v1",
        model_id="claude-3-5-haiku-20241022",
    )

    url, headers, data = anthropic.build_chat_request(
        claude, {"messages": [{"role": "user", "content": "hi"}]}, stream=True
    )

    assert url == "https://api.anthropic.com/v1/messages"
    assert headers["x-api-key"] == "sk-test-0123456789abcdef"
    assert headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in headers
    assert orjson.loads(data) == {
        "model": "claude-3-5-haiku-20241022",
        "max_tokens": anthropic.DEFAULT_MAX_TOKENS,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
    }


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, None),
        ("none", None, {"type": "none"}),
        ("required", None, {"type": "any"}),
        ({"type": "function", "function": {"name": "f"}}, None, {"type": "tool", "name": "f"}),
        ("auto", False, {"type": "auto", "disable_parallel_tool_use": True}),
    ],
)
def test_tool_choice_translation(choice, parallel, expected):
    body = {
        "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "tool_choice": choice,
    }
    if parallel is not None:
        body["parallel_tool_calls"] = parallel

    translated = anthropic.to_anthropic_request(body, "claude", stream=False)

    assert translated.get("tool_choice") == expected
    assert translated["tools"] == [
        {"name": "f", "input_schema": {"type": "object", "properties": {}}}
    ]


def test_stop_list_max_tokens_and_json_mode():
    body = {
        "messages": [{"role": "user", "content": "x"}],
        "stop": ["END", "STOP"],
        "max_tokens": 50,
        "response_format": {"type": "json_object"},
    }

    translated = anthropic.to_anthropic_request(body, "claude", stream=False)

    assert translated["stop_sequences"] == ["END", "STOP"]
    assert translated["max_tokens"] == 50
    assert translated["system"] == anthropic.JSON_INSTRUCTION


@pytest.mark.parametrize(
    "message",
    [
        {"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]},
        {
            "role": "assistant",
            "tool_calls": [{"id": "1", "function": {"name": "f", "arguments": "{not json"}}],
        },
        {"role": "function", "name": "f", "content": "x"},
    ],
)
def test_untranslatable_requests_are_the_callers_400(message):
    with pytest.raises(UpstreamError) as caught:
        anthropic.to_anthropic_request({"messages": [message]}, "claude", stream=False)

    error = caught.value
    assert (error.kind, error.status) == (ErrorKind.HTTP, 400)
    assert orjson.loads(error.body)["error"]["type"] == "invalid_request_error"


# --- Anthropic: responses, usage and streams --------------------------------------------------


def test_anthropic_message_translates_to_a_chat_completion():
    fixture = recorded("anthropic_message_tool_use.json")

    result = anthropic.parse_chat_response(orjson.dumps(fixture["response"]), created=1700000000)

    assert orjson.loads(result.body) == fixture["expected_openai_response"]
    assert result.usage == usage_of(fixture["expected_usage"])


def test_anthropic_cache_reads_are_never_counted_as_plain_input():
    counts = anthropic.usage_counts(
        {
            "input_tokens": 10,
            "cache_read_input_tokens": 1000,
            "cache_creation_input_tokens": None,
            "output_tokens": 5,
        }
    )

    usage = anthropic.to_usage(counts)
    openai_shape = anthropic.openai_usage(counts)

    assert usage == Usage(input_tokens=10, cached_tokens=1000, output_tokens=5)
    assert openai_shape["prompt_tokens"] == 1010
    assert openai_shape["prompt_tokens_details"] == {"cached_tokens": 1000}
    assert anthropic.to_usage(anthropic.usage_counts({"input_tokens": "x"})) is None
    assert anthropic.to_usage(anthropic.usage_counts({"input_tokens": 0})) is None


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length")],
)
def test_stop_reasons_map_to_finish_reasons(stop_reason, finish):
    message = {
        "id": "msg_1",
        "type": "message",
        "model": "claude",
        "content": [{"type": "text", "text": "hi"}],
        "stop_reason": stop_reason,
        "usage": {"input_tokens": 3, "output_tokens": 1},
    }

    result = orjson.loads(anthropic.parse_chat_response(orjson.dumps(message), created=1).body)

    assert result["choices"][0]["finish_reason"] == finish
    assert result["choices"][0]["message"] == {"role": "assistant", "content": "hi"}


@pytest.mark.parametrize("cut_size", [5, 100_000])
def test_recorded_anthropic_stream_translates_to_openai_chunks(cut_size):
    fixture = recorded("anthropic_stream_tool_use.json")
    state = StreamState()
    translator = anthropic.StreamTranslator(state, include_usage=True, model="m", created=7)

    out = []
    for piece in cuts(sse_body(fixture["events"]), cut_size):
        out.extend(translator.feed(piece))
    out.extend(translator.close())
    chunks = payloads(out)

    assert chunks[-1] == "[DONE]"
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    for chunk in chunks[:-1]:
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["id"] == "msg_014p7gG3wDgGV9EUtLvnow3U"
        assert chunk["model"] == "claude-3-haiku-20240307"
        assert chunk["created"] == 7
    deltas = [c["choices"][0]["delta"] for c in chunks[1:-1] if c["choices"]]
    text = "".join(d.get("content", "") for d in deltas)
    assert text == "Okay, let's check the weather for San Francisco, CA:"
    calls = [call for d in deltas for call in d.get("tool_calls", ())]
    assert calls[0] == {
        "index": 0,
        "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    arguments = "".join(call["function"]["arguments"] for call in calls)
    assert arguments == fixture["expected_arguments"]
    finishes = [c["choices"][0]["finish_reason"] for c in chunks[:-1] if c["choices"]]
    assert finishes[-1] == "tool_calls"
    assert chunks[-2]["choices"] == []
    assert chunks[-2]["usage"] == fixture["expected_openai_usage"]
    assert state.usage == usage_of(fixture["expected_usage"])
    assert "".join(state.text_parts) == fixture["expected_text"]
    assert state.finished


def test_anthropic_stream_usage_chunk_only_when_asked_for():
    fixture = recorded("anthropic_stream_tool_use.json")
    state = StreamState()
    translator = anthropic.StreamTranslator(state, include_usage=False, model="m", created=7)

    chunks = payloads(translator.feed(sse_body(fixture["events"])) + translator.close())

    assert all("usage" not in c for c in chunks[:-1])
    assert state.usage == usage_of(fixture["expected_usage"])


def test_anthropic_error_event_mid_stream_is_an_upstream_error():
    fixture = recorded("anthropic_stream_tool_use.json")
    translator = anthropic.StreamTranslator(
        StreamState(), include_usage=False, model="m", created=7
    )
    error = "event: error\ndata: " + json.dumps(
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    )

    out = translator.feed(sse_body(fixture["events"][:4]))
    with pytest.raises(UpstreamError) as caught:
        translator.feed(sse_body([error]))

    assert len(out) == 2  # role chunk, "Okay"
    assert caught.value.kind == ErrorKind.PROTOCOL
    assert caught.value.message == "stream error: overloaded_error: Overloaded"


def test_anthropic_stream_without_message_stop_ended_early():
    fixture = recorded("anthropic_stream_tool_use.json")
    translator = anthropic.StreamTranslator(
        StreamState(), include_usage=False, model="m", created=7
    )

    translator.feed(sse_body(fixture["events"][:-1]))

    with pytest.raises(UpstreamError, match="stream ended early"):
        translator.close()


# --- errors -----------------------------------------------------------------------------------


def test_anthropic_400_is_returned_in_openais_envelope():
    raw = (
        b'{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: too big"}}'
    )

    error = http_error(400, {}, raw, api_key="sk-ant-secret-key-123", now=0)

    assert (error.kind, error.status) == (ErrorKind.HTTP, 400)
    assert orjson.loads(error.body) == {
        "error": {
            "message": "max_tokens: too big",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


def test_error_messages_never_carry_the_key():
    key = "a1b2c3d4e5f6a7b8c9d0"  # an Azure-style key no pattern recognises
    raw = orjson.dumps({"error": {"message": f"key {key} and sk-proj-abcdefghijkl are invalid"}})

    error = http_error(401, {}, raw, api_key=key, now=0)

    assert key not in error.message
    assert "sk-proj-abcdefghijkl" not in error.message
    assert key not in error.body.decode()


def test_retry_after_in_seconds_milliseconds_or_http_date():
    assert parse_retry_after({"retry-after": "7"}, now=0) == 7.0
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}, now=0) == 1.5
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412480) == 10
    assert parse_retry_after({"retry-after": "soon"}, now=0) is None
    assert parse_retry_after({}, now=0) is None
