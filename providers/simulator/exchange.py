"""One completion request as the simulator understood it, whatever the protocol."""

from __future__ import annotations

from dataclasses import dataclass

from providers.simulator.reply import Reply


class BadRequest(Exception):
    """The request body is not valid for the protocol; answered with a 400."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(frozen=True, slots=True)
class Knobs:
    """Per-request settings taken from ``x-sim-*`` headers and the simulator config."""

    output_tokens: int = 20
    cached_tokens: int = 0
    cache_creation_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Exchange:
    id: str
    model: str
    created: int
    prompt: str  # text the answer is derived from (the last user message)
    prompt_tokens: int
    reply: Reply
    stream: bool = False
    include_usage: bool = False  # OpenAI stream_options.include_usage
    cached_tokens: int = 0  # part of prompt_tokens served from cache
    cache_creation_tokens: int = 0  # Anthropic: part of prompt_tokens written to cache

    @property
    def completion_tokens(self) -> int:
        return self.reply.tokens


def clamp_cache(prompt_tokens: int, knobs: Knobs) -> tuple[int, int]:
    """Cached and cache-write tokens are parts of the prompt, so they cannot exceed it."""
    cached = min(knobs.cached_tokens, prompt_tokens)
    creation = min(knobs.cache_creation_tokens, prompt_tokens - cached)
    return cached, creation


def int_param(body: dict, name: str, *, minimum: int = 1) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise BadRequest(f"'{name}' must be an integer >= {minimum}", name)
    return value


def stop_list(value: object, name: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise BadRequest(f"'{name}' must be a string or a list of strings", name)
