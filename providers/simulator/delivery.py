"""Putting a planned response on the wire, including the misbehaving ways to do it.

The log entry of the request is updated as bytes go out, so the log tells what the
client actually received: ``status`` once headers are written, ``completion_tokens``
as token-carrying events are written, ``completed`` only once the response ended the
way it was meant to.
"""

from __future__ import annotations

import itertools
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from providers.simulator import wire
from providers.simulator.connection import Connection

Frame = tuple[bytes, int]  # SSE event bytes, completion tokens it carries
Action = Literal["send", "refuse", "hang", "truncate", "cut", "drip", "endless_body"]

JSON = "application/json"
SSE = "text/event-stream; charset=utf-8"


@dataclass(slots=True)
class Plan:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    body_tokens: int = 0
    frames: Iterable[Frame] | None = None  # set: a chunked SSE body instead of `body`
    action: Action = "send"
    endless: bool = False  # frames never run out
    cut_after: int = 0  # events sent before a "cut"
    drip_ms: float = 0
    drip_bytes: int = 8
    interval: float = 0  # seconds between token-carrying events, or between endless bytes
    latency: float = 0  # seconds before the status line


def deliver(
    conn: Connection, plan: Plan, entry: dict[str, Any], keep_alive: bool
) -> Coroutine[Any, Any, None] | None:
    """Answer now when nothing has to wait, else return the coroutine that will."""
    slow = (
        plan.latency > 0
        or plan.endless
        or plan.action in ("hang", "drip", "endless_body")
        or (plan.interval > 0 and plan.frames is not None)
    )
    if slow:
        return _deliver_later(conn, plan, entry, keep_alive)
    _deliver_now(conn, plan, entry, keep_alive)
    return None


def _render(plan: Plan, keep_alive: bool) -> tuple[bytes, bytes, int]:
    """Head, body and the completion tokens of a finite response."""
    if plan.frames is None:
        head = wire.response_head(
            plan.status, plan.headers, length=len(plan.body), keep_alive=keep_alive
        )
        return head, plan.body, plan.body_tokens
    head = wire.response_head(plan.status, plan.headers, length=None, keep_alive=keep_alive)
    parts, tokens = [], 0
    for frame, count in plan.frames:
        parts.append(wire.chunk(frame))
        tokens += count
    parts.append(wire.LAST_CHUNK)
    return head, b"".join(parts), tokens


def _deliver_now(conn: Connection, plan: Plan, entry: dict[str, Any], keep_alive: bool) -> None:
    if plan.action == "refuse":
        conn.close()
        return
    if plan.action == "cut" and plan.frames is not None:
        head = wire.response_head(plan.status, plan.headers, length=None, keep_alive=keep_alive)
        frames = list(itertools.islice(plan.frames, plan.cut_after))
        entry["status"] = plan.status
        entry["completion_tokens"] = sum(count for _, count in frames)
        conn.write(head + b"".join(wire.chunk(frame) for frame, _ in frames))
        conn.close()
        return
    head, body, tokens = _render(plan, keep_alive)
    entry["status"] = plan.status
    entry["completion_tokens"] = tokens
    if plan.action in ("truncate", "cut"):
        conn.write(head + body[: len(body) // 2])
        conn.close()
        return
    entry["completed"] = True
    conn.write(head + body)
    if not keep_alive:
        conn.close()


async def _deliver_later(
    conn: Connection, plan: Plan, entry: dict[str, Any], keep_alive: bool
) -> None:
    if plan.latency > 0 and not await conn.sleep(plan.latency):
        return
    if plan.action == "hang":
        await conn.closed
    elif plan.action == "drip":
        await _drip(conn, plan, entry, keep_alive)
    elif plan.action == "endless_body":
        await _endless_body(conn, plan, entry)
    elif plan.frames is not None and (plan.interval > 0 or plan.endless):
        await _stream(conn, plan, entry, keep_alive)
    else:
        _deliver_now(conn, plan, entry, keep_alive)


async def _drip(conn: Connection, plan: Plan, entry: dict[str, Any], keep_alive: bool) -> None:
    head, body, tokens = _render(plan, keep_alive)
    data = head + body
    step = max(1, plan.drip_bytes)
    pieces = [data[i : i + step] for i in range(0, len(data), step)]
    delay = plan.drip_ms / 1000 / len(pieces)
    entry["status"] = plan.status
    entry["completion_tokens"] = tokens
    for index, piece in enumerate(pieces):
        conn.write(piece)
        await conn.drain()
        if index + 1 < len(pieces) and not await conn.sleep(delay):
            return
    entry["completed"] = True
    if not keep_alive:
        conn.close()


async def _endless_body(conn: Connection, plan: Plan, entry: dict[str, Any]) -> None:
    # JSON allows leading whitespace, so the body stays "valid so far" forever.
    conn.write(wire.response_head(plan.status, plan.headers, length=None, keep_alive=False))
    entry["status"] = plan.status
    while True:
        conn.write(wire.chunk(b" "))
        await conn.drain()
        if not await conn.sleep(plan.interval):
            return


async def _stream(conn: Connection, plan: Plan, entry: dict[str, Any], keep_alive: bool) -> None:
    assert plan.frames is not None  # noqa: S101 - guarded by the caller
    conn.write(
        wire.response_head(
            plan.status, plan.headers, length=None, keep_alive=keep_alive and not plan.endless
        )
    )
    entry["status"] = plan.status
    for index, (frame, tokens) in enumerate(plan.frames):
        if plan.action == "cut" and index >= plan.cut_after:
            conn.close()
            return
        conn.write(wire.chunk(frame))
        entry["completion_tokens"] += tokens
        await conn.drain()
        if tokens and plan.interval > 0 and not await conn.sleep(plan.interval):
            return
    conn.write(wire.LAST_CHUNK)
    entry["completed"] = True
    if not keep_alive:
        conn.close()
