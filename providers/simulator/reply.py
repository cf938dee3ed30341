"""What the fake model answers: deterministic text or one tool call.

Text: ``"Simulated answer to: <first 40 chars of the last user message>"`` followed by
filler words (``FILLER`` cycled) until the target length (20 words by default). One word
is one token and one streamed chunk. The answer is cut at ``max_tokens`` words
(finish "length"), then at the earliest stop sequence found in the emitted text.

Tool call: arguments are built from the tool's JSON-schema property names (see
``tool_arguments``); it costs 1 token for the name + one per 4-character fragment of the
arguments JSON (each fragment is one streamed delta). Tool calls ignore ``max_tokens``.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import orjson

FILLER = (
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
)
PREFIX = ("Simulated", "answer", "to:")
EXCERPT_CHARS = 40
ARGUMENT_FRAGMENT_CHARS = 4

Finish = Literal["stop", "length", "stop_sequence"]

_WORD = re.compile(r"\s*\S+")


@dataclass(frozen=True, slots=True)
class TextReply:
    chunks: tuple[str, ...]  # one token each; "".join(chunks) is the answer
    finish: Finish
    stop_sequence: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    @property
    def tokens(self) -> int:
        return len(self.chunks)


@dataclass(frozen=True, slots=True)
class ToolReply:
    call_id: str  # protocol prefix ("call_", "toolu_") is added by the protocol module
    name: str
    arguments: str  # JSON text

    @property
    def fragments(self) -> tuple[str, ...]:
        step = ARGUMENT_FRAGMENT_CHARS
        return tuple(self.arguments[i : i + step] for i in range(0, len(self.arguments), step))

    @property
    def tokens(self) -> int:
        return 1 + len(self.fragments)


Reply = TextReply | ToolReply


def words(prompt: str) -> Iterator[str]:
    """The endless word sequence an answer to `prompt` is a prefix of."""
    yield from PREFIX
    yield from prompt[:EXCERPT_CHARS].split()
    yield from itertools.cycle(FILLER)


def chunks(prompt: str) -> Iterator[str]:
    """Words as streamed: every word after the first carries its leading space."""
    for index, word in enumerate(words(prompt)):
        yield word if index == 0 else f" {word}"


def text_reply(
    prompt: str,
    *,
    target: int,
    max_tokens: int | None = None,
    stop: list[str] | None = None,
) -> TextReply:
    count = target if max_tokens is None else min(target, max_tokens)
    finish: Finish = "length" if max_tokens is not None and max_tokens < target else "stop"
    emitted = tuple(itertools.islice(chunks(prompt), count))
    if stop:
        text = "".join(emitted)
        hits = [(text.find(s), s) for s in stop if s and s in text]
        if hits:
            index, sequence = min(hits)
            return TextReply(_split(text[:index]), "stop_sequence", sequence)
    return TextReply(emitted, finish)


def _split(text: str) -> tuple[str, ...]:
    parts = _WORD.findall(text)
    trailing = text[sum(map(len, parts)) :]
    if parts and trailing:
        parts[-1] += trailing
    return tuple(parts)


def tool_arguments(schema: Any) -> dict[str, Any]:
    """A value for every top-level property: first enum value, else a token of its type."""
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict):
        return {}
    samples = {
        "string": "sim",
        "integer": 1,
        "number": 1.5,
        "boolean": True,
        "array": [],
        "object": {},
        "null": None,
    }
    arguments: dict[str, Any] = {}
    for name, spec in properties.items():
        spec = spec if isinstance(spec, dict) else {}
        if isinstance(spec.get("enum"), list) and spec["enum"]:
            arguments[name] = spec["enum"][0]
        else:
            kind = spec.get("type")
            kind = kind[0] if isinstance(kind, list) and kind else kind
            arguments[name] = samples.get(kind, "sim") if isinstance(kind, str) else "sim"
    return arguments


def tool_reply(name: str, schema: Any, *, seed: str) -> ToolReply:
    arguments = orjson.dumps(tool_arguments(schema)).decode()
    call_id = hashlib.sha256(f"{name}\0{arguments}\0{seed}".encode()).hexdigest()[:24]
    return ToolReply(call_id, name, arguments)
