"""Raw ASGI plumbing for the gateway: read a bounded body, send JSON or SSE."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from django.conf import settings

from routing.gateway.errors import GatewayError

JSON_HEADERS = ((b"content-type", b"application/json"),)
SSE_HEADERS = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
)


def header(scope: dict, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


def too_large(limit: int) -> GatewayError:
    return GatewayError(
        413, f"The request body is larger than {limit} bytes.", code="request_too_large"
    )


def check_content_length(scope: dict, limit: int) -> None:
    """413 before reading a body whose declared length is past `limit` bytes."""
    length = header(scope, b"content-length")
    # A malformed length never gets here: the HTTP server refuses it first.
    if length is not None and len(length) <= 19 and length.isdigit() and int(length) > limit:
        raise too_large(limit)


async def read_body(receive, limit: int) -> bytes:
    """The request body; 413 past `limit` bytes (counted as it arrives, never buffered past)."""
    message = await receive()
    # Almost every body is in the first message (the server read it with the headers), so
    # only a body still arriving pays for a timeout: the one a slow client would hold open.
    if message["type"] == "http.request" and not message.get("more_body"):
        body = message.get("body", b"")
        if len(body) > limit:
            raise too_large(limit)
        return body
    seconds = settings.SWITCHYARD_BODY_READ_TIMEOUT_SECONDS
    try:
        async with asyncio.timeout(seconds):
            return await _read_rest(receive, message, limit)
    except TimeoutError:
        raise GatewayError(
            408,
            f"The request body did not arrive within {seconds:g} seconds.",
            code="request_timeout",
        ) from None


async def _read_rest(receive, message: dict, limit: int) -> bytes:
    chunks = []
    size = 0
    while True:
        if message["type"] == "http.disconnect":
            raise GatewayError(400, "The client disconnected before sending the whole body.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)
        message = await receive()


async def send_json(
    send, status: int, body: bytes, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*JSON_HEADERS, (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})
