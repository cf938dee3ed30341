"""Parsing and validating OpenAI-format request bodies into what routing needs.

The input limits (SWITCHYARD_MAX_*, README's configuration table) are checked here, before
routing and before any limit is reserved, so a refused request costs no Redis call and
leaves no record. Each is a comparison on a value this module reads anyway; nesting depth
walks only the fields that can nest (`_check_depth`), which plain messages do not.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import orjson
from django.conf import settings
from django.core.signals import setting_changed

from routing.gateway.errors import GatewayError, bad_request
from routing.gateway.snapshot import Settings

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
# Characters per token for the routing-time estimate: a deliberate over-estimate for
# English (≈4) so context-window checks and reservations err on the safe side.
CHARS_PER_TOKEN = 3
# Images cost tokens too; a flat estimate (in characters) for routing.
IMAGE_CHARS = 1000
MAX_STOP_CHARS = 1000
# Top-level fields whose shape is checked as they are read (no nesting beyond it).
CHECKED_AS_READ = frozenset({"messages", "input", "stop"})


@dataclass(frozen=True, slots=True)
class InputLimits:
    """The bounds on a request body, from settings (README's configuration table)."""

    max_messages: int
    max_depth: int
    max_content_chars: int
    max_prompt_chars: int
    max_output_tokens: int
    max_n: int
    max_stop: int
    max_tools: int
    max_embedding_inputs: int


@functools.cache
def input_limits() -> InputLimits:
    return InputLimits(
        max_messages=settings.SWITCHYARD_MAX_MESSAGES,
        max_depth=settings.SWITCHYARD_MAX_JSON_DEPTH,
        max_content_chars=settings.SWITCHYARD_MAX_CONTENT_CHARS,
        max_prompt_chars=settings.SWITCHYARD_MAX_PROMPT_CHARS,
        max_output_tokens=settings.SWITCHYARD_MAX_OUTPUT_TOKENS,
        max_n=settings.SWITCHYARD_MAX_N,
        max_stop=settings.SWITCHYARD_MAX_STOP_SEQUENCES,
        max_tools=settings.SWITCHYARD_MAX_TOOLS,
        max_embedding_inputs=settings.SWITCHYARD_MAX_EMBEDDING_INPUTS,
    )


def _reload_limits(*, setting: str, **kwargs: Any) -> None:
    # Tests (and override_settings) change limits while the live gateway runs in-process.
    if setting.startswith("SWITCHYARD_MAX_"):
        input_limits.cache_clear()


setting_changed.connect(_reload_limits, dispatch_uid="routing.gateway.requests.limits")


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


def _too_deep(value: Any, depth: int, limit: int) -> bool:
    """Whether containers nest past `limit` levels, `value` being at level `depth` (the body
    itself is level 1)."""
    stack = [(value, depth)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        for child in node.values() if type(node) is dict else node:
            if type(child) is dict or type(child) is list:
                stack.append((child, depth + 1))
    return False


def _check_depth(body: dict[str, Any], limit: int, tools_json: bytes = b"") -> None:
    """400 when a top-level field nests deeper than `limit`."""
    for name, value in body.items():
        if (type(value) is dict or type(value) is list) and name not in CHECKED_AS_READ:
            # Fewer brackets than the levels left cannot be too deep: that spares walking
            # tool schemas, the only deep part of real requests (counting bytes runs in C).
            if name == "tools" and _brackets(tools_json) < limit:
                continue
            if _too_deep(value, 2, limit):
                raise _nested(name, limit)


def _brackets(raw: bytes) -> int:
    return raw.count(b"{") + raw.count(b"[")


def _nested(param: str, limit: int) -> GatewayError:
    return bad_request(
        f"{param} nests JSON deeper than {limit} levels (the body counting as one).",
        param=param,
    )


def parse_json(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # orjson refuses more than 1024 levels of nesting; parse_chat and parse_embeddings
        # hold bodies to SWITCHYARD_MAX_JSON_DEPTH.
        if str(exc).startswith("depth limit exceeded"):
            raise bad_request("The request body nests JSON too deeply.") from None
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
    if not user.isprintable():
        # It becomes an end user's id, shown on pages and stored (PostgreSQL refuses NUL).
        raise bad_request("'user' must not contain control or separator characters.", param="user")
    return user


def _int_in(body: dict[str, Any], name: str, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise bad_request(f"'{name}' must be an integer from 1 to {high}.", param=name)
    return value


def _max_tokens(body: dict[str, Any], limits: InputLimits) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = _int_in(body, name, limits.max_output_tokens)
        if value is not None:
            return value
    return None


def _too_long(param: str, limit: int) -> GatewayError:
    return bad_request(f"{param} is longer than {limit} characters.", param=param)


def _check_options(body: dict[str, Any], limits: InputLimits) -> None:
    """The sampling options that multiply work upstream: n, stop, tools."""
    _int_in(body, "n", limits.max_n)
    stop = body.get("stop")
    if stop is None or (isinstance(stop, str) and len(stop) <= MAX_STOP_CHARS):
        return
    if (
        not isinstance(stop, list)
        or len(stop) > limits.max_stop
        or not all(isinstance(s, str) and len(s) <= MAX_STOP_CHARS for s in stop)
    ):
        raise bad_request(
            f"'stop' must be a string or an array of at most {limits.max_stop} strings, "
            f"each of at most {MAX_STOP_CHARS} characters.",
            param="stop",
        )


def _read_messages(messages: list[Any], limits: InputLimits) -> tuple[int, int]:
    """(characters of text, images) in `messages`, each message checked on the way."""
    max_content, max_depth = limits.max_content_chars, limits.max_depth
    chars = images = 0
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise bad_request(
                f"messages[{i}] needs a 'role' of {sorted(ROLES)}.", param=f"messages[{i}]"
            )
        # A message is level 3 of the body. Only its fields besides role and content (tool
        # calls, or anything a client adds) are walked for depth: most messages have none.
        if len(message) > 2:
            for name, value in message.items():
                if (
                    (type(value) is dict or type(value) is list)
                    and name != "content"
                    and _too_deep(value, 4, max_depth)
                ):
                    raise _nested(f"messages[{i}].{name}", max_depth)
        content = message.get("content")
        if isinstance(content, str):
            if len(content) > max_content:
                raise _too_long(f"messages[{i}].content", max_content)
            chars += len(content)
        elif isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, dict):
                    raise bad_request(
                        f"messages[{i}].content parts must be objects.", param=f"messages[{i}]"
                    )
                for value in part.values():  # a part is level 5
                    if (type(value) is dict or type(value) is list) and _too_deep(
                        value, 6, max_depth
                    ):
                        raise _nested(f"messages[{i}].content[{j}]", max_depth)
                if part.get("type") == "image_url":
                    images += 1
                else:
                    text = part.get("text")
                    if isinstance(text, str):
                        if len(text) > max_content:
                            raise _too_long(f"messages[{i}].content[{j}].text", max_content)
                        chars += len(text)
        elif content is not None:
            raise bad_request(
                f"messages[{i}].content must be a string or an array.", param=f"messages[{i}]"
            )
    if chars > limits.max_prompt_chars:
        raise bad_request(
            f"The messages hold more than {limits.max_prompt_chars} characters in total.",
            param="messages",
        )
    return chars, images


def parse_chat(body: dict[str, Any]) -> ChatFacts:
    """Validate a chat completion request; 400 with the offending param when it is wrong."""
    limits = input_limits()
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty array.", param="messages")
    if len(messages) > limits.max_messages:
        raise bad_request(f"At most {limits.max_messages} messages per request.", param="messages")
    chars, images = _read_messages(messages, limits)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request("'stream' must be true or false.", param="stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise bad_request("'stream_options' must be an object.", param="stream_options")
    tools = body.get("tools")
    if tools is not None and (
        not isinstance(tools, list)
        or len(tools) > limits.max_tools
        or not all(isinstance(tool, dict) for tool in tools)
    ):
        raise bad_request(
            f"'tools' must be an array of at most {limits.max_tools} objects.", param="tools"
        )
    tools_json = orjson.dumps(tools) if tools else b""
    _check_depth(body, limits.max_depth, tools_json)
    response_format = body.get("response_format")
    if response_format is not None and not isinstance(response_format, dict):
        raise bad_request("'response_format' must be an object.", param="response_format")
    needs_json = response_format is not None and response_format.get("type") in (
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
    _check_options(body, limits)
    return ChatFacts(
        model=_model(body),
        stream=stream,
        include_usage=bool(options.get("include_usage")),
        max_tokens=_max_tokens(body, limits),
        prompt_tokens=(chars + len(tools_json) + IMAGE_CHARS * images) // CHARS_PER_TOKEN
        + 4 * len(messages),
        needs_tools=bool(tools) and body.get("tool_choice") != "none",
        needs_vision=images > 0,
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


def _is_tokens(value: object) -> bool:
    return type(value) is int


def parse_embeddings(body: dict[str, Any]) -> tuple[str, int, str | None]:
    """(model, estimated tokens, user) of an embeddings request."""
    limits = input_limits()
    value = body.get("input")
    if isinstance(value, str) and value:
        if len(value) > limits.max_content_chars:
            raise _too_long("input", limits.max_content_chars)
        chars = len(value)
    elif isinstance(value, list) and value and _is_tokens(value[0]):
        # One pre-tokenised input: as long as a text of four characters a token.
        if len(value) > limits.max_content_chars // 4 or not all(map(_is_tokens, value)):
            raise bad_request(
                f"'input' as token ids must be at most {limits.max_content_chars // 4} integers.",
                param="input",
            )
        chars = 4 * len(value)
    elif isinstance(value, list) and value:
        if len(value) > limits.max_embedding_inputs:
            raise bad_request(
                f"At most {limits.max_embedding_inputs} inputs per request.", param="input"
            )
        chars = 0
        for i, item in enumerate(value):
            if isinstance(item, str) and item:
                if len(item) > limits.max_content_chars:
                    raise _too_long(f"input[{i}]", limits.max_content_chars)
                chars += len(item)
            elif (
                isinstance(item, list)
                and item
                and len(item) <= limits.max_content_chars // 4
                and all(map(_is_tokens, item))
            ):
                chars += 4 * len(item)
            else:
                raise bad_request(
                    f"input[{i}] must be a non-empty string or at most "
                    f"{limits.max_content_chars // 4} token ids.",
                    param=f"input[{i}]",
                )
        if chars > limits.max_prompt_chars:
            raise bad_request(
                f"The inputs hold more than {limits.max_prompt_chars} characters in total.",
                param="input",
            )
    else:
        raise bad_request("'input' must be a non-empty string or array.", param="input")
    _check_depth(body, limits.max_depth)
    return _model(body), chars // CHARS_PER_TOKEN + 1, _user(body)
