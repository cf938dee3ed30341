"""Parsing and validating OpenAI-format request bodies into what routing needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from routing.gateway.errors import bad_request
from routing.gateway.snapshot import Settings

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
MAX_MESSAGES = 2048
MAX_TOKENS_BOUND = 1_000_000
# Characters per token for the routing-time estimate: a deliberate over-estimate for
# English (≈4) so context-window checks and reservations err on the safe side.
CHARS_PER_TOKEN = 3


@dataclass(slots=True)
class ChatFacts:
    model: str
    stream: bool
    include_usage: bool
    max_tokens: int | None
    prompt_tokens: int
    needs_tools: bool
    needs_vision: bool
    needs_json: bool
    user: str | None


def parse_json(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_request("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return body


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip() or len(model) > 256:
        raise bad_request(
            "'model' is required: a catalog model or auto, eco, balanced, precision.", param="model"
        )
    return model.strip()


def _user(body: dict[str, Any]) -> str | None:
    user = body.get("user")
    if user is None or user == "":
        return None
    if not isinstance(user, str) or len(user) > 128:
        raise bad_request("'user' must be a string of at most 128 characters.", param="user")
    return user


def _max_tokens(body: dict[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not 1 <= value <= MAX_TOKENS_BOUND
        ):
            raise bad_request(
                f"'{name}' must be an integer from 1 to {MAX_TOKENS_BOUND}.", param=name
            )
        return value
    return None


def parse_chat(body: dict[str, Any]) -> ChatFacts:
    """Validate a chat completion request; 400 with the offending param when it is wrong."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty array.", param="messages")
    if len(messages) > MAX_MESSAGES:
        raise bad_request(f"At most {MAX_MESSAGES} messages per request.", param="messages")
    chars = 0
    needs_vision = False
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise bad_request(
                f"messages[{i}] needs a 'role' of {sorted(ROLES)}.", param=f"messages[{i}]"
            )
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                if not isinstance(part, dict):
                    raise bad_request(
                        f"messages[{i}].content parts must be objects.", param=f"messages[{i}]"
                    )
                if part.get("type") == "image_url":
                    needs_vision = True
                    chars += 1000  # images cost tokens too; a flat estimate for routing
                else:
                    text = part.get("text")
                    chars += len(text) if isinstance(text, str) else 0
        elif content is not None:
            raise bad_request(
                f"messages[{i}].content must be a string or an array.", param=f"messages[{i}]"
            )
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request("'stream' must be true or false.", param="stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise bad_request("'stream_options' must be an object.", param="stream_options")
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise bad_request("'tools' must be an array.", param="tools")
    response_format = body.get("response_format")
    needs_json = isinstance(response_format, dict) and response_format.get("type") in (
        "json_object",
        "json_schema",
    )
    temperature = body.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or not 0 <= temperature <= 2
    ):
        raise bad_request("'temperature' must be a number from 0 to 2.", param="temperature")
    if tools:
        chars += len(orjson.dumps(tools))
    return ChatFacts(
        model=_model(body),
        stream=stream,
        include_usage=bool(options.get("include_usage")),
        max_tokens=_max_tokens(body),
        prompt_tokens=chars // CHARS_PER_TOKEN + 4 * len(messages),
        needs_tools=bool(tools) and body.get("tool_choice") != "none",
        needs_vision=needs_vision,
        needs_json=needs_json,
        user=_user(body),
    )


def apply_settings(body: dict[str, Any], facts: ChatFacts, settings: Settings) -> None:
    """Fill the caller's defaults into `body`: temperature, max tokens, the system prompt."""
    if settings.default_temperature is not None and "temperature" not in body:
        body["temperature"] = settings.default_temperature
    if facts.max_tokens is None and settings.default_max_tokens:
        body["max_tokens"] = facts.max_tokens = settings.default_max_tokens
    if settings.system_prompt:
        body["messages"] = [
            {"role": "system", "content": settings.system_prompt},
            *body["messages"],
        ]
        facts.prompt_tokens += len(settings.system_prompt) // CHARS_PER_TOKEN + 4


def parse_embeddings(body: dict[str, Any]) -> tuple[str, int, str | None]:
    """(model, estimated tokens, user) of an embeddings request."""
    value = body.get("input")
    if isinstance(value, str):
        chars = len(value)
    elif isinstance(value, list) and value:
        if len(value) > MAX_MESSAGES:
            raise bad_request(f"At most {MAX_MESSAGES} inputs per request.", param="input")
        chars = sum(
            len(v) if isinstance(v, str) else 4 * len(v) if isinstance(v, list) else 0
            for v in value
        )
    else:
        raise bad_request("'input' must be a string or a non-empty array.", param="input")
    return _model(body), chars // CHARS_PER_TOKEN + 1, _user(body)
