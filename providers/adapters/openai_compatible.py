"""OpenAI's chat-completions protocol, for OpenAI and every vendor preset that speaks it.

This is the hot path. A non-streamed answer goes back to the caller as the upstream's bytes,
unchanged: it is parsed once with orjson, which both extracts the usage and proves the body
is complete JSON (a truncated or HTML 200 must fail over, not reach the caller). A stream is
relayed event by event as it arrives; each event is parsed once to record its text (for
estimating tokens if the upstream never reports usage) and to spot the usage chunk.

The request side is pure (`build_*_request` -> url, headers, body bytes) so the sync key
validation sends exactly what the gateway sends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from multidict import CIMultiDict, CIMultiDictProxy

from providers.adapters.base import ChatResult, StreamState, Target, UpstreamError, Usage
from providers.adapters.errors import not_json_error, protocol_error, scrub
from providers.adapters.sse import EventSplitter, event_data
from providers.adapters.transport import USER_AGENT, request_bytes, stream_bytes
from providers.choices import ProviderKind
from providers.presets import preset_for

# Azure's newest GA data-plane version at the time of writing; a provider's
# options["api_version"] overrides it.
DEFAULT_AZURE_API_VERSION = "2024-10-21"
# Header sets are cached per (kind, key): a process serves a bounded set of keys, and the bound
# keeps a flood of distinct BYOK keys from growing the cache without limit.
HEADER_CACHE_SIZE = 4096
DONE = b"data: [DONE]\n\n"

Request = tuple[str, CIMultiDictProxy[str], bytes]

_headers_cache: dict[tuple[str, str], CIMultiDictProxy[str]] = {}


def request_headers(kind: str, api_key: str) -> CIMultiDictProxy[str]:
    """Auth and content headers for `kind`, built once per key (read-only: shared)."""
    cached = _headers_cache.get((kind, api_key))
    if cached is not None:
        return cached
    headers: CIMultiDict[str] = CIMultiDict(
        {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    )
    if api_key:
        # Local servers (Ollama, vLLM, LM Studio) need no auth but accept a bearer token, and a
        # vLLM started with --api-key requires one: send it whenever there is a key.
        if preset_for(kind).auth == "api-key":
            headers["api-key"] = api_key
        else:
            headers["Authorization"] = "Bearer " + api_key
    proxy = CIMultiDictProxy(headers)
    if len(_headers_cache) >= HEADER_CACHE_SIZE:
        _headers_cache.clear()
    _headers_cache[(kind, api_key)] = proxy
    return proxy


def _uses_deployments(target: Target) -> bool:
    """Azure's classic data plane: the deployment is in the URL, not in the body.

    Azure's newer `/openai/v1` surface is plain OpenAI (model in the body, api-key header).
    """
    return target.kind == ProviderKind.AZURE_OPENAI and not target.base_url.endswith("/v1")


def _api_version(target: Target) -> str:
    return str(target.options.get("api_version") or DEFAULT_AZURE_API_VERSION)


def endpoint_url(target: Target, path: str) -> str:
    """The URL of `path` ("chat/completions", "embeddings") for this target."""
    base = target.base_url.rstrip("/")
    if _uses_deployments(target):
        deployment = quote(target.model_id, safe="")
        return f"{base}/openai/deployments/{deployment}/{path}?api-version={_api_version(target)}"
    return f"{base}/{path}"


def build_chat_request(target: Target, body: Mapping[str, Any], *, stream: bool) -> Request:
    """(url, headers, body bytes) of a chat completion; `body` is not modified."""
    payload = dict(body)  # the caller may retry `body` on another target
    if _uses_deployments(target):
        payload.pop("model", None)
    else:
        payload["model"] = target.model_id
    if stream:
        payload["stream"] = True
        # Usage is always requested: it is what the attempt is charged by. The caller's own
        # include_usage only decides whether the usage chunk is relayed.
        options = payload.get("stream_options")
        payload["stream_options"] = (
            {**options, "include_usage": True}
            if isinstance(options, dict)
            else {"include_usage": True}
        )
    else:
        payload.pop("stream", None)
        payload.pop("stream_options", None)
    return (
        endpoint_url(target, "chat/completions"),
        request_headers(target.kind, target.api_key),
        orjson.dumps(payload),
    )


def build_embeddings_request(target: Target, body: Mapping[str, Any]) -> Request:
    payload = dict(body)
    if _uses_deployments(target):
        payload.pop("model", None)
    else:
        payload["model"] = target.model_id
    return (
        endpoint_url(target, "embeddings"),
        request_headers(target.kind, target.api_key),
        orjson.dumps(payload),
    )


def build_models_request(target: Target) -> tuple[str, CIMultiDictProxy[str]]:
    base = target.base_url.rstrip("/")
    if _uses_deployments(target):
        url = f"{base}/openai/models?api-version={_api_version(target)}"
    else:
        url = f"{base}/models"
    return url, request_headers(target.kind, target.api_key)


def parse_usage(obj: Any, *, has_completion: bool = True) -> Usage | None:
    """OpenAI's usage object as a `Usage`; None when absent, malformed or all zero.

    prompt_tokens includes the cached ones (prompt_tokens_details.cached_tokens, or
    DeepSeek's prompt_cache_hit_tokens), so they are subtracted: never counted twice.
    """
    if type(obj) is not dict:
        return None
    prompt = obj.get("prompt_tokens")
    completion = obj.get("completion_tokens", None if has_completion else 0)
    # `type(...) is int` also refuses booleans, which are ints to isinstance.
    if type(prompt) is not int or type(completion) is not int or prompt < 0 or completion < 0:
        return None
    if prompt == 0 and completion == 0:
        return None  # a placeholder, not a measurement: the caller estimates instead
    cached = 0
    details = obj.get("prompt_tokens_details")
    if type(details) is dict:
        value = details.get("cached_tokens")
        if type(value) is int and value > 0:
            cached = min(value, prompt)
    else:
        value = obj.get("prompt_cache_hit_tokens")
        if type(value) is int and value > 0:
            cached = min(value, prompt)
    return Usage(input_tokens=prompt - cached, cached_tokens=cached, output_tokens=completion)


def _load_object(raw: bytes, required: str) -> dict[str, Any]:
    """The JSON object of a 2xx body, which must hold `required`; PROTOCOL error otherwise."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise not_json_error(raw) from None
    if type(obj) is not dict or required not in obj:
        error = obj.get("error") if type(obj) is dict else None
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            # Some servers report failures with a 200; the message is the upstream's.
            raise protocol_error("error in a 2xx answer: " + scrub(error["message"], ""))
        raise protocol_error(f"2xx answer without {required!r}")
    return obj


def parse_chat_response(raw: bytes) -> ChatResult:
    """The upstream's chat.completion bytes, unchanged, with their usage."""
    obj = _load_object(raw, "choices")
    return ChatResult(body=raw, usage=parse_usage(obj.get("usage")))


def parse_embeddings_response(raw: bytes) -> ChatResult:
    obj = _load_object(raw, "data")
    return ChatResult(body=raw, usage=parse_usage(obj.get("usage"), has_completion=False))


def parse_models(raw: bytes) -> list[str]:
    obj = _load_object(raw, "data")
    data = obj["data"]
    if not isinstance(data, list):
        raise protocol_error("models list is not a list")
    return [
        item["id"] for item in data if isinstance(item, dict) and isinstance(item.get("id"), str)
    ]


class StreamRelay:
    """Turns upstream stream bytes into the events to forward, recording into `state`.

    Pure (no I/O) so recorded streams can be fed in any cut. Per event: one orjson parse; the
    usage lookup only when the raw bytes mention "usage" at all.
    """

    __slots__ = ("_splitter", "error", "include_usage", "state")

    def __init__(self, state: StreamState, *, include_usage: bool) -> None:
        self.state = state
        self.include_usage = include_usage
        # A failure met after good events in the same read: those events are relayed first,
        # then this is raised (see `feed`).
        self.error: UpstreamError | None = None
        self._splitter = EventSplitter()

    def feed(self, data: bytes) -> list[bytes]:
        """The complete events in `data` (plus what was buffered), ready to forward.

        Raises on a broken event, unless good events came before it in `data`: then it
        returns those and keeps the failure in `error`, for the caller to raise after them.
        """
        if self.error is not None:
            raise self.error
        out = []
        try:
            for event in self._splitter.feed(data):
                relayed = self._relay(event)
                if relayed is not None:
                    out.append(relayed)
        except UpstreamError as error:
            if not out:
                raise
            self.error = error
        return out

    def close(self) -> list[bytes]:
        """Call when the upstream closed: the last event if it lacked its blank line.

        Raises PROTOCOL "stream ended early" when [DONE] never came.
        """
        if self.error is not None:
            raise self.error
        out = []
        rest = self._splitter.rest()
        if rest:
            relayed = self._relay(rest)
            if relayed is not None:
                out.append(relayed)
        if not self.state.finished:
            raise protocol_error("stream ended early")
        return out

    def _relay(self, event: bytes) -> bytes | None:
        state = self.state
        if state.finished:
            return None  # anything after [DONE] is drained, not relayed
        payload = event_data(event)
        if payload is None:
            return None  # a comment (keep-alive, OpenRouter's "PROCESSING") or empty event
        if payload[:6] == b"[DONE]":
            state.finished = True
            return DONE
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise protocol_error("malformed stream event") from None
        if type(obj) is not dict:
            raise protocol_error("malformed stream event")
        state.chunks += 1
        choices = obj.get("choices")
        if b'"usage"' in payload:
            usage = obj.get("usage")
            if usage is not None:
                parsed = parse_usage(usage)
                if parsed is not None:
                    state.usage = parsed
                # The dedicated usage chunk (no choices) goes out only when asked for; a
                # provider that puts usage on a content chunk has it relayed with the content.
                if not choices and not self.include_usage:
                    return None
        elif choices is None and "error" in obj:
            error = obj["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise protocol_error("stream error: " + scrub(str(message), ""))
        if choices:
            self._record(choices)
        return b"data: " + payload + b"\n\n"

    def _record(self, choices: Any) -> None:
        parts = self.state.text_parts
        try:
            for choice in choices:
                delta = choice.get("delta")
                if not delta:
                    continue
                content = delta.get("content")
                if content:
                    parts.append(content)
                # Reasoning text (DeepSeek, OpenRouter) is billed as output too.
                reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                if reasoning:
                    parts.append(reasoning)
                calls = delta.get("tool_calls")
                if calls:
                    for call in calls:
                        function = call.get("function")
                        if function:
                            if function.get("name"):
                                parts.append(function["name"])
                            if function.get("arguments"):
                                parts.append(function["arguments"])
        except (AttributeError, TypeError):
            # An odd delta shape costs only the estimate's accuracy, never the stream.
            return


class OpenAICompatibleAdapter:
    """OpenAI, Azure OpenAI, Groq, OpenRouter, Together, Fireworks, Mistral, DeepSeek, ..."""

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
        return parse_chat_response(raw)

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
        relay = StreamRelay(state, include_usage=include_usage)
        chunks = stream_bytes(session, url, headers, data, timeout, target.api_key)
        async with aclosing(chunks):
            # Reading continues after [DONE] until the upstream ends the body, so the
            # connection returns to the pool instead of being closed half-read.
            async for chunk in chunks:
                # The events of one network read leave together: one write to the client
                # instead of one per event (nothing waits for more to arrive).
                events = relay.feed(chunk)
                if events:
                    yield events[0] if len(events) == 1 else b"".join(events)
                if relay.error is not None:
                    raise relay.error
        events = relay.close()
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
        url, headers, data = build_embeddings_request(target, body)
        raw = await request_bytes(session, "POST", url, headers, data, timeout, target.api_key)
        return parse_embeddings_response(raw)

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
