"""Anthropic Messages wire format: JSON and SSE events, models list, errors.

Usage follows Anthropic's split: ``input_tokens`` excludes the cached parts, so
``input_tokens + cache_read_input_tokens + cache_creation_input_tokens`` equals the
simulator's prompt token count.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
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

NAME = "anthropic"
MODEL_CREATED_AT = "2025-01-01T00:00:00Z"
Frame = tuple[bytes, int]  # SSE event bytes, completion tokens it carries

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_payload(status: int, message: str) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def error_body(status: int, message: str, code: str | None = None) -> bytes:
    del code  # Anthropic errors carry their kind in error.type only
    return orjson.dumps(error_payload(status, message))


def error_frame(status: int, message: str) -> bytes:
    del status  # mid-stream, Anthropic reports overload whatever went wrong
    return _event("error", error_payload(529, message))


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


# -- messages --------------------------------------------------------------------------


def _text_of(content: Any) -> str:
    """Text of a user turn, including tool results so an answer can follow them."""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    if isinstance(content, list):
        for block in content:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text":
                parts.append(str(block.get("text", "")))
            elif block.get("type") == "tool_result":
                parts.append(_text_of(block.get("content")))
    return " ".join(p for p in parts if p)


def _is_tool_result(message: dict[str, Any]) -> bool:
    content = message.get("content")
    return isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in content
    )


def _pick_tool(body: dict[str, Any], messages: list[dict[str, Any]]) -> tuple[str, Any] | None:
    tools = body.get("tools")
    choice = body.get("tool_choice") or {"type": "auto"}
    if not isinstance(choice, dict):
        raise BadRequest("'tool_choice' must be an object", "tool_choice")
    kind = choice.get("type", "auto")
    if not tools or kind == "none":
        return None
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise BadRequest("'tools' must be a list of objects", "tools")
    # After a tool result the model answers in text, so agent loops terminate.
    if kind == "auto" and _is_tool_result(messages[-1]):
        return None
    if kind == "tool":
        for tool in tools:
            if tool.get("name") == choice.get("name"):
                return str(tool["name"]), tool.get("input_schema")
        raise BadRequest(f"tool_choice names an unknown tool {choice.get('name')!r}", "tool_choice")
    return str(tools[0].get("name", "tool")), tools[0].get("input_schema")


def _validate(body: dict[str, Any]) -> tuple[str, list[dict[str, Any]], int]:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model: Field required", "model")
    messages = body.get("messages")
    if (
        not isinstance(messages, list)
        or not messages
        or not all(isinstance(m, dict) and m.get("role") in ("user", "assistant") for m in messages)
    ):
        raise BadRequest("messages: must be a non-empty list of user/assistant turns", "messages")
    max_tokens = int_param(body, "max_tokens")
    if max_tokens is None:
        raise BadRequest("max_tokens: Field required", "max_tokens")
    return model, messages, max_tokens


def count_prompt(body: dict[str, Any]) -> int:
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise BadRequest("messages: must be a list of turns", "messages")
    return tokens.prompt_tokens(
        messages, system=body.get("system"), tools=body.get("tools") or None
    )


def parse_messages(body: dict[str, Any], *, seq: int, knobs: Knobs) -> Exchange:
    model, messages, max_tokens = _validate(body)
    stop = stop_list(body.get("stop_sequences"), "stop_sequences")
    prompt = next(
        (_text_of(m.get("content")) for m in reversed(messages) if m["role"] == "user"), ""
    )
    tool = _pick_tool(body, messages)
    if tool is not None:
        reply: replies.Reply = replies.tool_reply(tool[0], tool[1], seed=prompt)
    else:
        reply = replies.text_reply(
            prompt, target=knobs.output_tokens, max_tokens=max_tokens, stop=stop
        )
    prompt_tokens = count_prompt(body)
    cached, creation = clamp_cache(prompt_tokens, knobs)
    return Exchange(
        id=f"msg_sim{seq:010d}",
        model=model,
        created=int(time.time()),
        prompt=prompt,
        prompt_tokens=prompt_tokens,
        reply=reply,
        stream=body.get("stream") is True,
        cached_tokens=cached,
        cache_creation_tokens=creation,
    )


def usage(ex: Exchange, output_tokens: int, mode: str) -> dict[str, Any] | None:
    if mode == "none":
        return None
    if mode == "bad":
        return {
            "input_tokens": "many",
            "output_tokens": -1,
            "cache_creation_input_tokens": None,
            "cache_read_input_tokens": "unknown",
        }
    if mode == "zero":
        return {
            "input_tokens": 0,
            "output_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
    return {
        "input_tokens": ex.prompt_tokens - ex.cached_tokens - ex.cache_creation_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": ex.cache_creation_tokens,
        "cache_read_input_tokens": ex.cached_tokens,
    }


def _stop(reply: replies.Reply) -> tuple[str, str | None]:
    if isinstance(reply, replies.ToolReply):
        return "tool_use", None
    if reply.finish == "length":
        return "max_tokens", None
    if reply.finish == "stop_sequence":
        return "stop_sequence", reply.stop_sequence
    return "end_turn", None


def _tool_block(reply: replies.ToolReply, *, with_input: bool) -> dict[str, Any]:
    return {
        "type": "tool_use",
        "id": f"toolu_{reply.call_id}",
        "name": reply.name,
        "input": orjson.loads(reply.arguments) if with_input else {},
    }


def message_json(ex: Exchange, mode: str, *, text: str | None = None) -> bytes:
    """The non-streamed message; `text` overrides the answer (oversized fault)."""
    reply = ex.reply
    if text is not None:
        content = [{"type": "text", "text": text}]
        output, stop_reason, stop_sequence = len(text.split()), "end_turn", None
    elif isinstance(reply, replies.ToolReply):
        content = [_tool_block(reply, with_input=True)]
        output, (stop_reason, stop_sequence) = reply.tokens, _stop(reply)
    else:
        content = [{"type": "text", "text": reply.text}]
        output, (stop_reason, stop_sequence) = reply.tokens, _stop(reply)
    payload: dict[str, Any] = {
        "id": ex.id,
        "type": "message",
        "role": "assistant",
        "model": ex.model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
    }
    body_usage = usage(ex, output, mode)
    if body_usage is not None:
        payload["usage"] = body_usage
    return orjson.dumps(payload)


def _message_start(ex: Exchange, mode: str) -> bytes:
    message: dict[str, Any] = {
        "id": ex.id,
        "type": "message",
        "role": "assistant",
        "model": ex.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
    }
    # Anthropic reports a provisional output count of 1 here; the final count comes in
    # message_delta and replaces it (it is cumulative, not an increment).
    start_usage = usage(ex, 1, mode)
    if start_usage is not None:
        message["usage"] = start_usage
    return _event("message_start", {"type": "message_start", "message": message})


def _block_start(ex: Exchange) -> bytes:
    reply = ex.reply
    block = (
        _tool_block(reply, with_input=False)
        if isinstance(reply, replies.ToolReply)
        else {"type": "text", "text": ""}
    )
    return _event(
        "content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}
    )


def _delta(delta: dict[str, Any]) -> bytes:
    return _event(
        "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
    )


PING = _event("ping", {"type": "ping"})


def message_frames(ex: Exchange, mode: str) -> Iterator[Frame]:
    """The SSE events Anthropic sends for this message, ending with message_stop."""
    reply = ex.reply
    yield _message_start(ex, mode), 0
    yield _block_start(ex), 0
    yield PING, 0
    if isinstance(reply, replies.ToolReply):
        # The tool name travels in content_block_start: it is the call's first token.
        yield _delta({"type": "input_json_delta", "partial_json": ""}), 1
        for fragment in reply.fragments:
            yield _delta({"type": "input_json_delta", "partial_json": fragment}), 1
    else:
        for piece in reply.chunks:
            yield _delta({"type": "text_delta", "text": piece}), 1
    yield _event("content_block_stop", {"type": "content_block_stop", "index": 0}), 0
    stop_reason, stop_sequence = _stop(reply)
    delta: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
    }
    final = usage(ex, reply.tokens, mode)
    if final is not None:
        delta["usage"] = {"output_tokens": final["output_tokens"]}
    yield _event("message_delta", delta), 0
    yield _event("message_stop", {"type": "message_stop"}), 0


def message_endless_frames(ex: Exchange) -> Iterator[Frame]:
    yield _message_start(ex, "normal"), 0
    yield (
        _event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        0,
    )
    for piece in replies.chunks(ex.prompt):
        yield _delta({"type": "text_delta", "text": piece}), 1


# -- models ----------------------------------------------------------------------------


def _display_name(model_id: str) -> str:
    return " ".join(part.capitalize() for part in model_id.replace("_", "-").split("-"))


def model_object(model_id: str) -> dict[str, Any]:
    return {
        "id": model_id,
        "type": "model",
        "display_name": _display_name(model_id),
        "created_at": MODEL_CREATED_AT,
    }


def models_body(models: tuple[str, ...]) -> bytes:
    return orjson.dumps(
        {
            "data": [model_object(m) for m in models],
            "has_more": False,
            "first_id": models[0] if models else None,
            "last_id": models[-1] if models else None,
        }
    )


def model_body(model_id: str) -> bytes:
    return orjson.dumps(model_object(model_id))


def count_tokens_body(prompt_tokens: int) -> bytes:
    return orjson.dumps({"input_tokens": prompt_tokens})
