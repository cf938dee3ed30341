"""Sending one request on the shared aiohttp session, with every failure classified.

The adapters build (url, headers, body) with pure functions and hand them here; this module
is the only place that touches aiohttp's request and response objects.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping

import aiohttp

from providers.adapters.base import UpstreamError
from providers.adapters.errors import (
    MAX_BODY_BYTES,
    MAX_ERROR_BODY_BYTES,
    classify_exception,
    describe_error_body,
    http_error,
    protocol_error,
)

# Sent in the adapters' cached header sets rather than as session defaults, which aiohttp
# would merge into every request's headers again.
USER_AGENT = "switchyard"
# What aiohttp and the loop raise for network trouble; anything else is a bug and propagates.
NETWORK_ERRORS = (aiohttp.ClientError, OSError, TimeoutError)
# A streamed request answered with one of these did not start a stream: an error document
# sent with a 200 (some OpenAI-compatible servers do that) or a proxy's error page.
NOT_A_STREAM = frozenset({"application/json", "text/html"})


async def read_limited(
    response: aiohttp.ClientResponse, limit: int | None = None, *, truncate: bool = False
) -> bytes:
    """The body, refusing (or with `truncate`, cutting) one over `limit` bytes.

    Content-Length is checked first so an oversized answer is refused before it is read; the
    running total then covers chunked and compressed bodies (a small gzip can inflate a lot).
    """
    if limit is None:
        limit = MAX_BODY_BYTES  # read at call time so a test can lower it
    length = response.content_length
    if length is not None and length > limit and not truncate:
        raise protocol_error(f"response body over {limit} bytes")
    content = response.content
    chunks: list[bytes] = []
    size = 0
    while chunk := await content.readany():
        size += len(chunk)
        if size > limit:
            if not truncate:
                raise protocol_error(f"response body over {limit} bytes")
            chunks.append(chunk[: len(chunk) - (size - limit)])
            break
        chunks.append(chunk)
    if len(chunks) == 1:
        return chunks[0]
    return b"".join(chunks)


async def error_from(response: aiohttp.ClientResponse, api_key: str) -> UpstreamError:
    """The UpstreamError for a non-2xx response (its body read, bounded, for the message)."""
    try:
        raw = await read_limited(response, MAX_ERROR_BODY_BYTES, truncate=True)
    except (*NETWORK_ERRORS, UpstreamError):
        raw = b""  # the status alone still classifies the failure
    return http_error(response.status, response.headers, raw, api_key=api_key, now=time.time())


async def request_bytes(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: Mapping[str, str],
    data: bytes | None,
    client_timeout: aiohttp.ClientTimeout,
    api_key: str,
) -> bytes:
    """The body of a 2xx answer; UpstreamError for anything else."""
    reading = False
    try:
        async with session.request(
            method, url, data=data, headers=headers, timeout=client_timeout, allow_redirects=False
        ) as response:
            if not 200 <= response.status < 300:
                raise await error_from(response, api_key)
            reading = True
            return await read_limited(response)
    except UpstreamError:
        raise
    except NETWORK_ERRORS as exc:
        raise classify_exception(exc, reading=reading) from exc


async def stream_bytes(
    session: aiohttp.ClientSession,
    url: str,
    headers: Mapping[str, str],
    data: bytes,
    client_timeout: aiohttp.ClientTimeout,
    api_key: str,
) -> AsyncIterator[bytes]:
    """Network chunks of a 2xx streamed answer as they arrive; UpstreamError for failures.

    Consume it inside `contextlib.aclosing` so the connection goes back to the pool as soon
    as the consumer stops, not when the generator is garbage-collected.
    """
    reading = False
    try:
        async with session.post(
            url, data=data, headers=headers, timeout=client_timeout, allow_redirects=False
        ) as response:
            if not 200 <= response.status < 300:
                raise await error_from(response, api_key)
            if response.content_type in NOT_A_STREAM:
                raw = await read_limited(response, MAX_ERROR_BODY_BYTES, truncate=True)
                detail = describe_error_body(raw, api_key)
                raise protocol_error(f"expected an event stream, got: {detail}")
            reading = True
            async for chunk in response.content.iter_any():
                yield chunk
    except UpstreamError:
        raise
    except NETWORK_ERRORS as exc:
        if reading and not isinstance(exc, TimeoutError):
            raise protocol_error("stream ended early (connection cut)") from exc
        raise classify_exception(exc, reading=reading) from exc
