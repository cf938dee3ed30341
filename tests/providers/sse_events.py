"""Adapters yield the events of one network read together; tests compare event by event."""

from __future__ import annotations

from collections.abc import Iterable


def split_events(chunks: Iterable[bytes]) -> list[bytes]:
    """Each SSE event of `chunks` on its own, with its blank-line end."""
    return [event + b"\n\n" for chunk in chunks for event in chunk.split(b"\n\n") if event]
