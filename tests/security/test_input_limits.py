"""Hostile input on /v1/*: past a limit a request is a 400 (or 413 / 408) in OpenAI's envelope
naming the offending param, with no upstream call, no usage record and nothing reserved."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
import redis
from django.conf import settings as django_settings

from usage.models import UsageRecord

MESSAGES = [{"role": "user", "content": "hi"}]
OK_BODY = {"model": "sim-eco", "messages": MESSAGES}
# What admitting a request writes to Redis: rate-limit counters, reservations, live credits.
RESERVATION_PATTERNS = ("sy:rl:*", "sy:resv:*", "sy:spend:*", "sy:credit*")


def post(world, body=None, *, path="chat/completions", content=None, headers=None):
    return httpx.post(
        f"{world.base_url}/{path}",
        headers={**world.headers(), **(headers or {})},
        json=body,
        content=content,
        timeout=10,
    )


def reserved_keys() -> list[bytes]:
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    try:
        return [key for pattern in RESERVATION_PATTERNS for key in client.keys(pattern)]
    finally:
        client.close()


def assert_refused(world, response, status, *, param=None, says=""):
    """The envelope, its param and message; then that nothing went upstream, nothing was
    recorded and nothing was reserved."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param
    assert says in error["message"]
    assert world.sim.log == []
    world.gateway.flush_usage()
    assert UsageRecord.objects.count() == 0
    assert reserved_keys() == []
    return error


def nested(depth: int) -> object:
    """A value `depth` containers deep: [[[...]]]."""
    value: object = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_a_good_request_reserves_and_records_so_the_checks_below_can_fail(world):
    response = post(world, OK_BODY)

    assert response.status_code == 200, response.text
    assert reserved_keys() != []
    world.gateway.flush_usage()
    assert UsageRecord.objects.count() == 1


# --- body size and read time -----------------------------------------------------------------


def raw_request(world, head: bytes, body_parts=(), pause: float = 0) -> bytes:
    """Send a hand-written request (to lie about or trickle the body); the response bytes."""
    with socket.create_connection(("127.0.0.1", world.gateway.port), timeout=10) as sock:
        sock.sendall(head)
        for part in body_parts:
            time.sleep(pause)
            try:
                sock.sendall(part)
            except OSError:
                break  # the server answered and closed first
        sock.settimeout(10)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and b"}}" in chunks[-1]:
                break
        return b"".join(chunks)


def test_a_declared_length_past_the_limit_is_413_before_the_body_is_read(world):
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\n"
        + f"Authorization: Bearer {world.api_key}\r\n".encode()
        + b"Content-Type: application/json\r\nContent-Length: 104857600\r\n\r\n"
    )
    started = time.monotonic()
    reply = raw_request(world, head)  # not one byte of the 100 MB is sent

    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b'"code":"request_too_large"' in reply
    assert time.monotonic() - started < 5
    assert world.sim.log == []
    assert reserved_keys() == []


def test_a_chunked_body_is_counted_as_it_arrives_and_refused_past_the_limit(world):
    state = world.gateway.state
    saved, state.max_body = state.max_body, 2000

    def chunks():
        yield b'{"model": "sim-eco", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}]}'

    try:
        response = post(world, content=chunks())  # no Content-Length: chunked
    finally:
        state.max_body = saved
    assert_refused(world, response, 413, says="larger than 2000 bytes")
    assert response.json()["error"]["code"] == "request_too_large"


def test_a_body_trickled_slower_than_the_read_timeout_is_408(world, settings):
    settings.SWITCHYARD_BODY_READ_TIMEOUT_SECONDS = 0.5
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\n"
        + f"Authorization: Bearer {world.api_key}\r\n".encode()
        + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    first = b'{"model": "sim-eco", '
    parts = [b"%x\r\n%s\r\n" % (len(first), first)] + [b"1\r\n \r\n"] * 8

    reply = raw_request(world, head, parts, pause=0.2)

    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b'"code":"request_timeout"' in reply
    assert b"within 0.5 seconds" in reply
    assert world.sim.log == []


# --- counts and sizes --------------------------------------------------------------------


def test_more_messages_than_the_limit_is_400_and_the_limit_itself_is_fine(world, settings):
    settings.SWITCHYARD_MAX_MESSAGES = 4
    assert post(world, {**OK_BODY, "messages": MESSAGES * 4}).status_code == 200
    world.gateway.flush_usage()
    UsageRecord.objects.all().delete()
    world.sim.clear_log()
    redis.Redis.from_url(django_settings.REDIS_URL).flushdb()

    response = post(world, {**OK_BODY, "messages": MESSAGES * 5})

    assert_refused(world, response, 400, param="messages", says="At most 4 messages")


def test_a_message_longer_than_the_content_limit_is_400(world, settings):
    settings.SWITCHYARD_MAX_CONTENT_CHARS = 100
    body = {**OK_BODY, "messages": [*MESSAGES, {"role": "user", "content": "x" * 101}]}

    assert_refused(
        world,
        post(world, body),
        400,
        param="messages[1].content",
        says="longer than 100 characters",
    )


def test_a_text_part_longer_than_the_content_limit_is_400(world, settings):
    settings.SWITCHYARD_MAX_CONTENT_CHARS = 100
    parts = [{"type": "text", "text": "ok"}, {"type": "text", "text": "y" * 101}]
    body = {**OK_BODY, "messages": [{"role": "user", "content": parts}]}

    assert_refused(world, post(world, body), 400, param="messages[0].content[1].text")


def test_messages_past_the_total_character_limit_are_400(world, settings):
    settings.SWITCHYARD_MAX_PROMPT_CHARS = 250
    body = {**OK_BODY, "messages": [{"role": "user", "content": "z" * 100}] * 3}

    assert_refused(world, post(world, body), 400, param="messages", says="250 characters")


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("max_tokens", 0, "from 1 to 262144"),
        ("max_tokens", 262_145, "from 1 to 262144"),
        ("max_completion_tokens", 10**12, "from 1 to 262144"),
        ("max_tokens", "100", "integer"),
        ("n", 9, "'n' must be an integer from 1 to 8"),
        ("n", 0, "'n' must be an integer from 1 to 8"),
        ("stop", ["a", "b", "c", "d", "e"], "at most 4 strings"),
        ("stop", "s" * 1001, "at most 1000 characters"),
        ("stop", [1, 2], "array of at most 4 strings"),
        ("response_format", "json", "must be an object"),
    ],
)
def test_out_of_bounds_options_name_their_param(world, field, value, says):
    response = post(world, {**OK_BODY, field: value})

    assert_refused(world, response, 400, param=field, says=says)


def test_more_tools_than_the_limit_is_400(world, settings):
    settings.SWITCHYARD_MAX_TOOLS = 3
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}

    assert_refused(world, post(world, {**OK_BODY, "tools": [tool] * 4}), 400, param="tools")
    assert_refused(world, post(world, {**OK_BODY, "tools": [tool, "f"]}), 400, param="tools")


# --- nesting -----------------------------------------------------------------------------


def test_a_real_tool_schema_passes_the_depth_check(world):
    schema = {
        "type": "object",
        "properties": {
            "order": {
                "type": "object",
                "properties": {
                    "items": {
                        "type": "array",
                        "items": {"type": "object", "properties": {"sku": {"type": "string"}}},
                    }
                },
            }
        },
    }
    tools = [{"type": "function", "function": {"name": "place", "parameters": schema}}]

    response = post(world, {**OK_BODY, "tools": tools, "tool_choice": "none"})

    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("where", "param"),
    [
        ("metadata", "metadata"),
        ("tools", "tools"),
        ("message field", "messages[0].extra"),
        ("content part", "messages[0].content[0]"),
    ],
)
def test_nesting_past_the_depth_limit_is_400_wherever_it_hides(world, where, param):
    deep = nested(40)
    body = dict(OK_BODY)
    if where == "metadata":
        body["metadata"] = {"x": deep}
    elif where == "tools":
        body["tools"] = [{"type": "function", "function": {"name": "f", "parameters": deep}}]
    elif where == "message field":
        body["messages"] = [{"role": "user", "content": "hi", "extra": deep}]
    else:
        body["messages"] = [{"role": "user", "content": [{"type": "text", "text": "a", "x": deep}]}]

    assert_refused(world, post(world, body), 400, param=param, says="deeper than 32 levels")


def test_nesting_too_deep_to_forward_upstream_is_400_not_500(world):
    # orjson re-serialises at most 254 levels for the upstream; this must not get that far.
    response = post(world, {**OK_BODY, "metadata": nested(300)})

    assert_refused(world, response, 400, param="metadata")


def test_nesting_past_the_json_parser_limit_is_400(world):
    content = b'{"model": "sim-eco", "x": ' + b"[" * 2000 + b"]" * 2000 + b"}"

    assert_refused(world, post(world, content=content), 400, says="nests JSON too deeply")


# --- embeddings ----------------------------------------------------------------------------


def test_more_embedding_inputs_than_the_limit_is_400(world, settings):
    settings.SWITCHYARD_MAX_EMBEDDING_INPUTS = 3
    body = {"model": "sim-embed", "input": ["a", "b", "c", "d"]}

    assert_refused(
        world, post(world, body, path="embeddings"), 400, param="input", says="At most 3"
    )


@pytest.mark.parametrize(
    ("value", "param"),
    [
        (["fine", "x" * 101], "input[1]"),
        (["fine", ""], "input[1]"),
        (["fine", {"text": "x"}], "input[1]"),
        ("", "input"),
        ([1, 2, "three"], "input"),
    ],
)
def test_bad_embedding_inputs_name_the_item(world, settings, value, param):
    settings.SWITCHYARD_MAX_CONTENT_CHARS = 100

    response = post(world, {"model": "sim-embed", "input": value}, path="embeddings")

    assert_refused(world, response, 400, param=param)


def test_an_embeddings_body_nested_past_the_limit_is_400(world):
    body = {"model": "sim-embed", "input": "x", "extra_body": nested(40)}

    assert_refused(world, post(world, body, path="embeddings"), 400, param="extra_body")
