"""The simulator's token counting rule: the ground truth tests compare a gateway against.

The rule is deliberately simple so a test can compute expected numbers by hand:

* text: ``ceil(len(text) / 4)`` tokens (``len`` in characters);
* a message: 3 tokens of overhead + the text rule applied to the total size of its
  content, where text parts count their text and any other part (images, tool_use,
  tool_result blocks...) or ``tool_calls`` counts its compact JSON encoding in bytes;
* a system prompt (Anthropic's ``system``) counts as one more message;
* tools: the text rule applied to the compact JSON encoding of the whole ``tools`` list;
* embeddings input: the text rule per string, or one token per integer of a token list;
* output: one token per word of the answer (one streamed chunk per word), see reply.py.
"""

from __future__ import annotations

from typing import Any

import orjson

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD = 3


def text_tokens(text: str) -> int:
    return -(-len(text) // CHARS_PER_TOKEN)


def _json_size(value: Any) -> int:
    return len(orjson.dumps(value))


def content_size(content: Any) -> int:
    """Characters a message content weighs: text as is, anything else as JSON."""
    if content is None:
        return 0
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        size = 0
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                size += len(str(part.get("text", "")))
            else:
                size += _json_size(part)
        return size
    return _json_size(content)


def message_tokens(message: dict[str, Any]) -> int:
    size = content_size(message.get("content"))
    if message.get("tool_calls"):
        size += _json_size(message["tool_calls"])
    return MESSAGE_OVERHEAD + -(-size // CHARS_PER_TOKEN)


def prompt_tokens(
    messages: list[dict[str, Any]],
    *,
    system: Any = None,
    tools: list[Any] | None = None,
) -> int:
    total = sum(message_tokens(m) for m in messages)
    if system:
        total += MESSAGE_OVERHEAD + -(-content_size(system) // CHARS_PER_TOKEN)
    if tools:
        total += -(-_json_size(tools) // CHARS_PER_TOKEN)
    return total


def embedding_tokens(item: str | list[int]) -> int:
    if isinstance(item, str):
        return text_tokens(item)
    return len(item)
