"""OpenAI wire format: chat completions (JSON and SSE), embeddings, models, errors."""

from __future__ import annotations

import base64
import hashlib
import itertools
import math
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from providers.simulator import reply as replies
from providers.simulator import tokens
from providers.simulator.exchange import (
    BadRequest,
    Exchange,
    Knobs,
    clamp_cache,
    int_param,
    stop_list,
)

NAME = "openai"
MODEL_CREATED = 1735689600  # 2025-01-01, fixed so model lists are deterministic
DEFAULT_DIMENSIONS = 8
Frame = tuple[bytes, int]  # SSE event bytes, completion tokens it carries

_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "model_not_found"),
    408: ("timeout_error", None),
    409: ("conflict_error", None),
    429: ("requests", "rate_limit_exceeded"),
}


def error_object(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    kind, default_code = _ERROR_TYPES.get(
        status, ("server_error", None) if status >= 500 else ("invalid_request_error", None)
    )
    return {"message": message, "type": kind, "param": None, "code": code or default_code}


def error_body(status: int, message: str, code: str | None = None) -> bytes:
    return orjson.dumps({"error": error_object(status, message, code)})


def error_frame(status: int, message: str) -> bytes:
    return _sse({"error": error_object(status, message)})


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


DONE = b"data: [DONE]\n\n"


# -- chat completions ------------------------------------------------------------------


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def _pick_tool(body: dict[str, Any], messages: list[dict[str, Any]]) -> tuple[str, Any] | None:
    tools = body.get("tools")
    choice = body.get("tool_choice", "auto")
    if not tools or choice == "none":
        return None
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise BadRequest("'tools' must be a list of objects", "tools")
    # After a tool result the model answers in text, so agent loops terminate.
    if messages[-1].get("role") == "tool" and choice == "auto":
        return None
    functions = [t.get("function") or {} for t in tools]
    if isinstance(choice, dict):
        wanted = (choice.get("function") or {}).get("name")
        for function in functions:
            if function.get("name") == wanted:
                return wanted, function.get("parameters")
        raise BadRequest(f"tool_choice names an unknown function {wanted!r}", "tool_choice")
    first = functions[0]
    return str(first.get("name", "tool")), first.get("parameters")


def parse_chat(body: dict[str, Any], *, seq: int, knobs: Knobs) -> Exchange:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("you must provide a model parameter", "model")
    messages = body.get("messages")
    if (
        not isinstance(messages, list)
        or not messages
        or not all(isinstance(m, dict) and "role" in m for m in messages)
    ):
        raise BadRequest("'messages' must be a non-empty list of messages", "messages")
    max_tokens = int_param(body, "max_completion_tokens")
    if max_tokens is None:
        max_tokens = int_param(body, "max_tokens")
    stop = stop_list(body.get("stop"), "stop")
    prompt = next(
        (_text_of(m.get("content")) for m in reversed(messages) if m["role"] == "user"), ""
    )
    tool = _pick_tool(body, messages)
    prompt_tokens = tokens.prompt_tokens(messages, tools=body.get("tools") or None)
    if tool is not None:
        reply: replies.Reply = replies.tool_reply(tool[0], tool[1], seed=prompt)
    else:
        reply = replies.text_reply(
            prompt, target=knobs.output_tokens, max_tokens=max_tokens, stop=stop
        )
    cached, _ = clamp_cache(prompt_tokens, knobs)
    options = body.get("stream_options")
    return Exchange(
        id=f"chatcmpl-sim{seq:010d}",
        model=model,
        created=int(time.time()),
        prompt=prompt,
        prompt_tokens=prompt_tokens,
        reply=reply,
        stream=body.get("stream") is True,
        include_usage=isinstance(options, dict) and options.get("include_usage") is True,
        cached_tokens=cached,
    )


def usage(
    prompt_tokens: int, completion_tokens: int, cached_tokens: int, mode: str
) -> dict[str, Any] | None:
    if mode == "none":
        return None
    if mode == "bad":
        return {
            "prompt_tokens": "many",
            "completion_tokens": -1,
            "total_tokens": None,
            "prompt_tokens_details": {"cached_tokens": "unknown"},
        }
    if mode == "zero":
        prompt_tokens = completion_tokens = cached_tokens = 0
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _finish(reply: replies.Reply) -> str:
    if isinstance(reply, replies.ToolReply):
        return "tool_calls"
    return "length" if reply.finish == "length" else "stop"


def _tool_call_id(reply: replies.ToolReply) -> str:
    return f"call_{reply.call_id}"


def chat_json(ex: Exchange, mode: str, *, text: str | None = None) -> bytes:
    """The non-streamed completion; `text` overrides the answer (oversized fault)."""
    reply = ex.reply
    message: dict[str, Any]
    if isinstance(reply, replies.ToolReply) and text is None:
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": _tool_call_id(reply),
                    "type": "function",
                    "function": {"name": reply.name, "arguments": reply.arguments},
                }
            ],
            "refusal": None,
            "annotations": [],
        }
        completion = reply.tokens
    else:
        content = text if text is not None else reply.text  # type: ignore[union-attr]
        message = {"role": "assistant", "content": content, "refusal": None, "annotations": []}
        completion = len(content.split()) if text is not None else reply.tokens
    payload: dict[str, Any] = {
        "id": ex.id,
        "object": "chat.completion",
        "created": ex.created,
        "model": ex.model,
        "system_fingerprint": "fp_sim",
        "service_tier": "default",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "stop" if text is not None else _finish(reply),
            }
        ],
    }
    body_usage = usage(ex.prompt_tokens, completion, ex.cached_tokens, mode)
    if body_usage is not None:
        payload["usage"] = body_usage
    return orjson.dumps(payload)


def _chunk(ex: Exchange, choices: list[dict[str, Any]], mode: str) -> bytes:
    payload: dict[str, Any] = {
        "id": ex.id,
        "object": "chat.completion.chunk",
        "created": ex.created,
        "model": ex.model,
        "system_fingerprint": "fp_sim",
        "choices": choices,
    }
    if ex.include_usage and mode != "none":
        payload["usage"] = None
    return _sse(payload)


def _delta(delta: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
    return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]


def chat_frames(ex: Exchange, mode: str) -> Iterator[Frame]:
    """The SSE events OpenAI sends for this completion, ending with [DONE]."""
    reply = ex.reply
    if isinstance(reply, replies.ToolReply):
        head = {
            "index": 0,
            "id": _tool_call_id(reply),
            "type": "function",
            "function": {"name": reply.name, "arguments": ""},
        }
        yield (
            _chunk(ex, _delta({"role": "assistant", "content": None, "tool_calls": [head]}), mode),
            1,
        )
        for fragment in reply.fragments:
            call = {"index": 0, "function": {"arguments": fragment}}
            yield _chunk(ex, _delta({"tool_calls": [call]}), mode), 1
    else:
        yield _chunk(ex, _delta({"role": "assistant", "content": "", "refusal": None}), mode), 0
        for piece in reply.chunks:
            yield _chunk(ex, _delta({"content": piece}), mode), 1
    yield _chunk(ex, _delta({}, _finish(reply)), mode), 0
    if ex.include_usage and mode != "none":
        payload = {
            "id": ex.id,
            "object": "chat.completion.chunk",
            "created": ex.created,
            "model": ex.model,
            "system_fingerprint": "fp_sim",
            "choices": [],
            "usage": usage(ex.prompt_tokens, reply.tokens, ex.cached_tokens, mode),
        }
        yield _sse(payload), 0
    yield DONE, 0


def chat_endless_frames(ex: Exchange) -> Iterator[Frame]:
    yield _chunk(ex, _delta({"role": "assistant", "content": "", "refusal": None}), "none"), 0
    for piece in replies.chunks(ex.prompt):
        yield _chunk(ex, _delta({"content": piece}), "none"), 1


# -- embeddings ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    model: str
    inputs: list[str | list[int]]
    dimensions: int
    base64: bool

    @property
    def prompt_tokens(self) -> int:
        return sum(tokens.embedding_tokens(item) for item in self.inputs)


def _is_token_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(t, int) and not isinstance(t, bool) for t in value)
    )


def parse_embeddings(body: dict[str, Any]) -> EmbeddingRequest:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("you must provide a model parameter", "model")
    raw = body.get("input")
    if isinstance(raw, str) or _is_token_list(raw):
        inputs: list[str | list[int]] = [raw]
    elif (
        isinstance(raw, list) and raw and all(isinstance(i, str) or _is_token_list(i) for i in raw)
    ):
        inputs = list(raw)
    else:
        raise BadRequest("'input' must be a string, a token list or a list of those", "input")
    if any(item == "" for item in inputs):
        raise BadRequest("'input' cannot contain an empty string", "input")
    dimensions = int_param(body, "dimensions") or DEFAULT_DIMENSIONS
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise BadRequest("'encoding_format' must be 'float' or 'base64'", "encoding_format")
    return EmbeddingRequest(model, inputs, dimensions, encoding == "base64")


def embedding_vector(item: str | list[int], dimensions: int) -> list[float]:
    """A unit vector derived from a hash of the input, so equal inputs embed equally."""
    seed = item if isinstance(item, str) else orjson.dumps(item).decode()
    raw = b""
    for block in itertools.count():
        if len(raw) >= 4 * dimensions:
            break
        raw += hashlib.sha256(f"{block}\0{seed}".encode()).digest()
    values = [v / 2**31 - 1.0 for v in struct.unpack(f"<{dimensions}I", raw[: 4 * dimensions])]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 6) for v in values]


def embeddings_json(request: EmbeddingRequest, mode: str) -> bytes:
    data = []
    for index, item in enumerate(request.inputs):
        vector = embedding_vector(item, request.dimensions)
        encoded: list[float] | str = vector
        if request.base64:
            encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    payload: dict[str, Any] = {"object": "list", "data": data, "model": request.model}
    body_usage = usage(request.prompt_tokens, 0, 0, mode)
    if body_usage is not None:
        payload["usage"] = {
            "prompt_tokens": body_usage["prompt_tokens"],
            "total_tokens": body_usage["total_tokens"],
        }
    return orjson.dumps(payload)


# -- models ----------------------------------------------------------------------------


def model_object(model_id: str) -> dict[str, Any]:
    return {
        "id": model_id,
        "object": "model",
        "created": MODEL_CREATED,
        "owned_by": "switchyard-sim",
    }


def models_body(models: tuple[str, ...]) -> bytes:
    return orjson.dumps({"object": "list", "data": [model_object(m) for m in models]})


def model_body(model_id: str) -> bytes:
    return orjson.dumps(model_object(model_id))
