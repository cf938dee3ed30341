"""Anthropic's Messages protocol, translated to and from OpenAI's chat completions.

Callers only ever speak OpenAI's format: requests are translated to Messages on the way out,
answers (whole or streamed, tool use included) back to chat.completion(.chunk) on the way in.
Usage mapping: Anthropic reports `input_tokens` without the cache, plus
`cache_read_input_tokens` and `cache_creation_input_tokens` beside it. OpenAI's
`prompt_tokens` is the sum of all three with the cache reads as `cached_tokens`; `Usage` keeps
cache reads apart and counts cache writes as input (they are billed as input, at a premium).

The request side is pure (`build_*_request` -> url, headers, body bytes), shared with the sync
key validation.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDict, CIMultiDictProxy

from providers.adapters.base import ChatResult, StreamState, Target, UpstreamError, Usage
from providers.adapters.errors import (
    bad_request,
    not_json_error,
    protocol_error,
    scrub,
)
from providers.adapters.sse import EventSplitter, event_data
from providers.adapters.transport import USER_AGENT, request_bytes, stream_bytes

ANTHROPIC_VERSION = "2023-06-01"
# Anthropic requires max_tokens; OpenAI callers usually omit it. 4096 is the largest value
# every current Claude model accepts.
DEFAULT_MAX_TOKENS = 4096
HEADER_CACHE_SIZE = 4096
JSON_INSTRUCTION = "Respond with a single valid JSON object and nothing else."
DONE = b"data: [DONE]\n\n"

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "pause_turn": "stop",
    "refusal": "content_filter",
}

USAGE_FIELDS = (
    "input_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "output_tokens",
)

Request = tuple[str, CIMultiDictProxy[str], bytes]

_headers_cache: dict[str, CIMultiDictProxy[str]] = {}


def request_headers(api_key: str) -> CIMultiDictProxy[str]:
    cached = _headers_cache.get(api_key)
    if cached is not None:
        return cached
    headers = CIMultiDictProxy(
        CIMultiDict(
            {
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "x-api-key": api_key,
                "anthropic-version": ANTHROPIC_VERSION,
            }
        )
    )
    if len(_headers_cache) >= HEADER_CACHE_SIZE:
        _headers_cache.clear()
    _headers_cache[api_key] = headers
    return headers


# --- request: OpenAI chat completion -> Anthropic Messages ------------------------------------


def _image_block(part: Mapping[str, Any]) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise bad_request("image_url without a url", "messages")
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        if ";base64" not in header or not data:
            raise bad_request("image data URLs must be base64-encoded", "messages")
        media_type = header[5:].split(";", 1)[0]
        source = {"type": "base64", "media_type": media_type, "data": data}
        return {"type": "image", "source": source}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise bad_request("image_url must be an http(s) or base64 data URL", "messages")


def _content_blocks(content: Any, *, images: bool) -> list[dict[str, Any]]:
    """OpenAI content (a string or parts) as Anthropic blocks; empty text is dropped."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise bad_request("message content must be a string or a list of parts", "messages")
    blocks = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "refusal"):
            text = part.get("text") or part.get("refusal")
            if text:
                block: dict[str, Any] = {"type": "text", "text": str(text)}
                if "cache_control" in part:  # prompt caching markers pass through
                    block["cache_control"] = part["cache_control"]
                blocks.append(block)
        elif kind == "image_url" and images:
            blocks.append(_image_block(part))
        else:
            message = f"content part {kind!r} is not supported by this provider"
            raise bad_request(message, "messages")
    return blocks


def _tool_use_block(call: Any) -> dict[str, Any]:
    try:
        function = call["function"]
        arguments = function.get("arguments") or "{}"
        tool_input = orjson.loads(arguments) if isinstance(arguments, str) else arguments
        block = {"type": "tool_use", "id": call["id"], "name": function["name"]}
    except (KeyError, TypeError, AttributeError, orjson.JSONDecodeError):
        raise bad_request(
            "assistant tool_calls must have id, name and JSON arguments", "messages"
        ) from None
    if not isinstance(tool_input, dict):
        raise bad_request("tool call arguments must be a JSON object", "messages")
    block["input"] = tool_input
    return block


def _tool_result_block(message: Mapping[str, Any]) -> dict[str, Any]:
    tool_call_id = message.get("tool_call_id")
    if not isinstance(tool_call_id, str):
        raise bad_request("tool messages need a tool_call_id", "messages")
    content = message.get("content")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_call_id}
    if isinstance(content, str):
        block["content"] = content
    elif content:
        block["content"] = _content_blocks(content, images=True)
    return block


def _append(messages: list[dict[str, Any]], role: str, content: str | list[dict[str, Any]]) -> None:
    """Add a turn, merging it into the previous one of the same role.

    Consecutive tool results must arrive as one user turn holding every tool_result block; a
    user message right after tool results joins that turn too (Anthropic alternates roles).
    """
    if messages and messages[-1]["role"] == role:
        previous = messages[-1]
        if isinstance(previous["content"], str):
            previous["content"] = [{"type": "text", "text": previous["content"]}]
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        previous["content"].extend(content)
    else:
        messages.append({"role": role, "content": content})


def _tools(tools: Sequence[Any]) -> list[dict[str, Any]]:
    out = []
    for tool in tools:
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise bad_request("only function tools are supported by this provider", "tools")
        function = tool.get("function") or {}
        name = function.get("name")
        if not isinstance(name, str):
            raise bad_request("every tool needs a function name", "tools")
        converted: dict[str, Any] = {
            "name": name,
            "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
        }
        if function.get("description"):
            converted["description"] = function["description"]
        if "cache_control" in tool:
            converted["cache_control"] = tool["cache_control"]
        out.append(converted)
    return out


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    if choice is None or choice == "auto":
        converted: dict[str, Any] | None = {"type": "auto"} if parallel is False else None
    elif choice == "none":
        converted = {"type": "none"}
    elif choice == "required":
        converted = {"type": "any"}
    elif isinstance(choice, dict) and isinstance((choice.get("function") or {}).get("name"), str):
        converted = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise bad_request("tool_choice must be auto, none, required or a function", "tool_choice")
    if converted is not None and parallel is False and converted["type"] != "none":
        converted["disable_parallel_tool_use"] = True
    return converted


def to_anthropic_request(body: Mapping[str, Any], model_id: str, *, stream: bool) -> dict[str, Any]:
    """An OpenAI chat-completion body as an Anthropic Messages body."""
    if (body.get("n") or 1) != 1:
        raise bad_request("n > 1 is not supported by this provider", "n")
    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            raise bad_request("every message must be an object", "messages")
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            system.extend(_content_blocks(content, images=False))
        elif role == "user":
            if isinstance(content, str):
                _append(messages, "user", content)
            else:
                _append(messages, "user", _content_blocks(content, images=True))
        elif role == "assistant":
            blocks = _content_blocks(content, images=False)
            blocks.extend(_tool_use_block(call) for call in message.get("tool_calls") or ())
            if blocks:  # Anthropic refuses empty turns; an empty assistant turn says nothing
                _append(messages, "assistant", blocks)
        elif role == "tool":
            _append(messages, "user", [_tool_result_block(message)])
        else:
            message = f"message role {role!r} is not supported by this provider"
            raise bad_request(message, "messages")

    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in (
        "json_object",
        "json_schema",
    ):
        # Anthropic has no JSON mode; an instruction (with the schema when given) is the
        # documented way to get JSON out of Claude.
        instruction = JSON_INSTRUCTION
        schema = (response_format.get("json_schema") or {}).get("schema")
        if schema:
            instruction += " It must match this JSON schema: " + orjson.dumps(schema).decode()
        system.append({"type": "text", "text": instruction})

    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
    payload: dict[str, Any] = {"model": model_id, "max_tokens": max_tokens, "messages": messages}
    if system:
        if any("cache_control" in block for block in system):
            payload["system"] = system
        else:
            payload["system"] = "\n\n".join(block["text"] for block in system)
    stop = body.get("stop")
    if isinstance(stop, str):
        payload["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        payload["stop_sequences"] = [s for s in stop if isinstance(s, str)]
    temperature = body.get("temperature")
    if isinstance(temperature, int | float):
        # OpenAI's range is 0-2, Anthropic's 0-1: clamp rather than fail a request the router
        # sent here on the caller's behalf.
        payload["temperature"] = min(max(temperature, 0), 1)
    if body.get("top_p") is not None:
        payload["top_p"] = body["top_p"]
    tools = body.get("tools")
    if tools:
        payload["tools"] = _tools(tools)
        choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
        if choice is not None:
            payload["tool_choice"] = choice
    user = body.get("user")
    if isinstance(user, str) and user:
        payload["metadata"] = {"user_id": user}
    if stream:
        payload["stream"] = True
    return payload


def build_chat_request(target: Target, body: Mapping[str, Any], *, stream: bool) -> Request:
    """(url, headers, body bytes) of a Messages call for an OpenAI-format `body`."""
    payload = to_anthropic_request(body, target.model_id, stream=stream)
    return (
        target.base_url.rstrip("/") + "/messages",
        request_headers(target.api_key),
        orjson.dumps(payload),
    )


def build_models_request(target: Target) -> tuple[str, CIMultiDictProxy[str]]:
    return target.base_url.rstrip("/") + "/models?limit=1000", request_headers(target.api_key)


# --- response: Anthropic Messages -> OpenAI chat completion ------------------------------------


def _count(value: Any) -> int | None:
    return value if type(value) is int and value >= 0 else None


def usage_counts(obj: Any) -> tuple[int, int, int, int] | None:
    """(input, cache read, cache creation, output) from Anthropic's usage; None if malformed.

    The cache fields are null or absent when caching was not used; the other two must be there.
    """
    if type(obj) is not dict:
        return None
    plain = _count(obj.get("input_tokens"))
    output = _count(obj.get("output_tokens"))
    read = _count(obj.get("cache_read_input_tokens") or 0)
    creation = _count(obj.get("cache_creation_input_tokens") or 0)
    if plain is None or output is None or read is None or creation is None:
        return None
    return plain, read, creation, output


def to_usage(counts: tuple[int, int, int, int] | None) -> Usage | None:
    """`Usage` with cache reads apart (never counted twice) and cache writes as input."""
    if counts is None or not any(counts):
        return None
    plain, read, creation, output = counts
    return Usage(input_tokens=plain + creation, cached_tokens=read, output_tokens=output)


def openai_usage(counts: tuple[int, int, int, int]) -> dict[str, Any]:
    plain, read, creation, output = counts
    prompt = plain + read + creation
    return {
        "prompt_tokens": prompt,
        "completion_tokens": output,
        "total_tokens": prompt + output,
        "prompt_tokens_details": {"cached_tokens": read},
    }


def to_openai_response(message: Mapping[str, Any], *, created: int) -> dict[str, Any]:
    """An Anthropic message as an OpenAI chat.completion object."""
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in message.get("content") or ():
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            tool_calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": orjson.dumps(block.get("input") or {}).decode(),
                    },
                }
            )
        # thinking / redacted_thinking blocks have no chat.completion equivalent
    reply: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not tool_calls else None,
    }
    if tool_calls:
        reply["tool_calls"] = tool_calls
    result: dict[str, Any] = {
        "id": message.get("id"),
        "object": "chat.completion",
        "created": created,
        "model": message.get("model"),
        "choices": [
            {
                "index": 0,
                "message": reply,
                "logprobs": None,
                "finish_reason": FINISH_REASONS.get(message.get("stop_reason") or "", "stop"),
            }
        ],
    }
    counts = usage_counts(message.get("usage"))
    if counts is not None:
        result["usage"] = openai_usage(counts)
    return result


def parse_chat_response(raw: bytes, *, created: int) -> ChatResult:
    """Anthropic message bytes -> OpenAI chat.completion bytes and usage."""
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise not_json_error(raw) from None
    if type(message) is not dict or message.get("type") != "message":
        if type(message) is dict and message.get("type") == "error":
            error = message.get("error") or {}
            raise protocol_error("error in a 2xx answer: " + scrub(str(error.get("message")), ""))
        raise protocol_error("2xx answer that is not a message")
    usage = to_usage(usage_counts(message.get("usage")))
    return ChatResult(body=orjson.dumps(to_openai_response(message, created=created)), usage=usage)


def parse_models(raw: bytes) -> list[str]:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise not_json_error(raw) from None
    data = obj.get("data") if isinstance(obj, dict) else None
    if not isinstance(data, list):
        raise protocol_error("2xx answer without a models list")
    return [
        item["id"] for item in data if isinstance(item, dict) and isinstance(item.get("id"), str)
    ]


class StreamTranslator:
    """Turns Anthropic stream bytes into OpenAI chat.completion.chunk events, recording `state`.

    Pure (no I/O) so recorded streams can be fed in any cut. The part of every chunk before the
    delta is serialised once per stream (at message_start) and reused.
    """

    __slots__ = (
        "_counts",
        "_head",
        "_splitter",
        "_tools",
        "_usage_ok",
        "created",
        "error",
        "include_usage",
        "state",
    )

    def __init__(
        self, state: StreamState, *, include_usage: bool, model: str, created: int
    ) -> None:
        self.state = state
        self.include_usage = include_usage
        self.created = created
        self._splitter = EventSplitter()
        self._tools: dict[int, int] = {}  # Anthropic content block index -> OpenAI tool index
        # input, cache read, cache creation, output; None until reported.
        self._counts: list[int | None] = [None, 0, 0, None]
        self._usage_ok = True
        # A failure met after good events in the same read: raised after they are relayed.
        self.error: UpstreamError | None = None
        self._set_head("", model)

    def _set_head(self, message_id: str, model: str) -> None:
        self._head = (
            b'data: {"id":'
            + orjson.dumps(message_id)
            + b',"object":"chat.completion.chunk","created":'
            + str(self.created).encode()
            + b',"model":'
            + orjson.dumps(model)
            + b',"choices":[{"index":0,"delta":'
        )

    def _chunk(self, delta: bytes, finish: bytes = b"null") -> bytes:
        return self._head + delta + b',"logprobs":null,"finish_reason":' + finish + b"}]}\n\n"

    def feed(self, data: bytes) -> list[bytes]:
        """Chunks for the complete events in `data`; failures as in `StreamRelay.feed`."""
        if self.error is not None:
            raise self.error
        out: list[bytes] = []
        try:
            for event in self._splitter.feed(data):
                self._translate(event, out)
        except UpstreamError as error:
            if not out:
                raise
            self.error = error
        return out

    def close(self) -> list[bytes]:
        """Call when the upstream closed; PROTOCOL "stream ended early" without message_stop."""
        if self.error is not None:
            raise self.error
        out: list[bytes] = []
        rest = self._splitter.rest()
        if rest:
            self._translate(rest, out)
        if not self.state.finished:
            raise protocol_error("stream ended early")
        return out

    def _update_counts(self, usage: Any) -> None:
        # message_start carries the input side; message_delta the cumulative output (and, on
        # newer API versions, the input side again). Present fields overwrite; one malformed
        # field spoils the whole usage (half a usage would under-charge), and the caller
        # estimates instead.
        if usage is None:
            return
        if type(usage) is not dict:
            self._usage_ok = False
            return
        for position, name in enumerate(USAGE_FIELDS):
            value = usage.get(name)
            if value is None:
                continue
            if type(value) is int and value >= 0:
                self._counts[position] = value
            else:
                self._usage_ok = False

    def _final_usage(self) -> tuple[int, int, int, int] | None:
        plain, read, creation, output = self._counts
        if not self._usage_ok or plain is None or read is None or creation is None:
            return None
        if output is None:
            return None
        return plain, read, creation, output

    def _translate(self, event: bytes, out: list[bytes]) -> None:
        state = self.state
        if state.finished:
            return
        payload = event_data(event)
        if payload is None:
            return
        try:
            obj = orjson.loads(payload)
            kind = obj["type"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise protocol_error("malformed stream event") from None
        state.chunks += 1
        if kind == "content_block_delta":  # by far the most frequent event
            delta = obj.get("delta") or {}
            delta_type = delta.get("type")
            if delta_type == "text_delta":
                text = delta.get("text") or ""
                state.text_parts.append(text)
                out.append(self._chunk(b'{"content":' + orjson.dumps(text) + b"}"))
            elif delta_type == "input_json_delta":
                fragment = delta.get("partial_json") or ""
                state.text_parts.append(fragment)
                index = self._tools.get(obj.get("index"), 0)
                out.append(
                    self._chunk(
                        orjson.dumps(
                            {"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}
                        )
                    )
                )
            # thinking / signature / citations deltas have no chat.completion.chunk equivalent
        elif kind == "content_block_start":
            block = obj.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = len(self._tools)
                self._tools[obj.get("index")] = index
                name = block.get("name") or ""
                state.text_parts.append(name)
                call = {
                    "index": index,
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": name, "arguments": ""},
                }
                out.append(self._chunk(orjson.dumps({"tool_calls": [call]})))
            elif block.get("type") == "text" and block.get("text"):
                state.text_parts.append(block["text"])
                out.append(self._chunk(b'{"content":' + orjson.dumps(block["text"]) + b"}"))
        elif kind == "message_start":
            message = obj.get("message") or {}
            self._set_head(str(message.get("id") or ""), str(message.get("model") or ""))
            self._update_counts(message.get("usage"))
            out.append(self._chunk(b'{"role":"assistant","content":""}'))
        elif kind == "message_delta":
            self._update_counts(obj.get("usage"))
            stop_reason = (obj.get("delta") or {}).get("stop_reason")
            if stop_reason:
                finish = FINISH_REASONS.get(stop_reason, "stop")
                out.append(self._chunk(b"{}", orjson.dumps(finish)))
        elif kind == "message_stop":
            state.finished = True
            counts = self._final_usage()
            state.usage = to_usage(counts)
            if self.include_usage and counts is not None and state.usage is not None:
                usage = b',"choices":[],"usage":' + orjson.dumps(openai_usage(counts)) + b"}\n\n"
                out.append(self._head[: self._head.index(b',"choices":')] + usage)
            out.append(DONE)
        elif kind == "error":
            error = obj.get("error") or {}
            message = scrub(str(error.get("message") or ""), "")
            raise protocol_error(f"stream error: {error.get('type') or 'error'}: {message}")
        # ping, content_block_stop: nothing to relay


class AnthropicAdapter:
    """Anthropic's Messages API behind OpenAI's chat-completions interface."""

    async def chat(
        self,
        session: aiohttp.ClientSession,
        target: Target,
        body: dict[str, Any],
        *,
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 - aiohttp applies it per phase
    ) -> ChatResult:
        url, headers, data = build_chat_request(target, body, stream=False)
        raw = await request_bytes(session, "POST", url, headers, data, timeout, target.api_key)
        return parse_chat_response(raw, created=int(time.time()))

    async def stream(
        self,
        session: aiohttp.ClientSession,
        target: Target,
        body: dict[str, Any],
        state: StreamState,
        *,
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 - aiohttp applies it per phase
        include_usage: bool,
    ) -> AsyncIterator[bytes]:
        url, headers, data = build_chat_request(target, body, stream=True)
        translator = StreamTranslator(
            state, include_usage=include_usage, model=target.model_id, created=int(time.time())
        )
        chunks = stream_bytes(session, url, headers, data, timeout, target.api_key)
        async with aclosing(chunks):
            async for chunk in chunks:
                # The events of one network read leave together: one write to the client
                # instead of one per event (nothing waits for more to arrive).
                events = translator.feed(chunk)
                if events:
                    yield events[0] if len(events) == 1 else b"".join(events)
                if translator.error is not None:
                    raise translator.error
        events = translator.close()
        if events:
            yield b"".join(events)

    async def embeddings(
        self,
        session: aiohttp.ClientSession,
        target: Target,
        body: dict[str, Any],
        *,
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 - aiohttp applies it per phase
    ) -> ChatResult:
        # Anthropic has no embeddings endpoint; the router should never send one here.
        raise bad_request("embeddings are not supported by the Anthropic protocol", "model")

    async def list_models(
        self,
        session: aiohttp.ClientSession,
        target: Target,
        *,
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 - aiohttp applies it per phase
    ) -> list[str]:
        url, headers = build_models_request(target)
        raw = await request_bytes(session, "GET", url, headers, None, timeout, target.api_key)
        return parse_models(raw)
