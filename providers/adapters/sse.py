"""Server-sent events: splitting a byte stream into events and reading their data.

Network reads cut events anywhere, so bytes are buffered until a blank line closes an event.
Only bytes-level `find`/`split` (C speed) touch the stream; nothing scans it per byte in
Python.
"""

from __future__ import annotations

from providers.adapters.errors import MAX_BODY_BYTES, protocol_error


class EventSplitter:
    """Feeds network chunks, returns the complete events (without their blank-line ends)."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf + data if self._buf else data
        # The SSE spec allows CRLF line ends; some proxies use them. A CR cut from its LF by a
        # network read stays in the buffer and is joined with the LF on the next feed.
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        if b"\n\n" not in buf:
            if len(buf) > MAX_BODY_BYTES:
                raise protocol_error("stream event over the size limit")
            self._buf = buf
            return []
        events = buf.split(b"\n\n")
        self._buf = events.pop()
        return events

    def rest(self) -> bytes:
        """What is left when the stream closed: an event missing its final blank line."""
        rest, self._buf = self._buf.strip(), b""
        return rest


def event_data(event: bytes) -> bytes | None:
    """The data of one event (its `data:` lines joined), or None for a comment / empty event."""
    if event[:6] == b"data: " and b"\n" not in event:
        return event[6:]  # the common shape: one data line
    lines = []
    for line in event.split(b"\n"):
        if line[:5] == b"data:":
            value = line[5:]
            lines.append(value[1:] if value[:1] == b" " else value)
    return b"\n".join(lines) if lines else None
