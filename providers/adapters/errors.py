"""How a failed upstream attempt becomes an `UpstreamError`, whatever the wire protocol.

Pure functions only (no I/O): transport.py calls them with what aiohttp raised or returned,
validation.py with what httpx returned, so the admin's "test key" and the gateway classify
the same failure the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson

from config.logging import REDACTED, redact
from config.netguard import DestinationRefused
from providers.adapters.base import ErrorKind, UpstreamError

# A completion is kilobytes; 16 MB is far past any legitimate answer (a long embeddings batch
# included) and bounds what one misbehaving upstream can make a worker hold in memory.
MAX_BODY_BYTES = 16 * 1024 * 1024
# Error bodies are read only to extract a message; anything longer is noise.
MAX_ERROR_BODY_BYTES = 64 * 1024
# The message kept in a 4xx envelope returned to the caller (the short one is 200 chars).
MAX_ENVELOPE_MESSAGE_CHARS = 2000
# Keys shorter than this are not scrubbed by value: replacing "abc" everywhere would mangle
# the message, and a key that short is not a secret worth the damage.
MIN_SCRUBBED_KEY_CHARS = 8

_DEFAULT_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def scrub(text: str, api_key: str) -> str:
    """`text` without the key (by value) nor anything that looks like a key (by pattern)."""
    if len(api_key) >= MIN_SCRUBBED_KEY_CHARS and api_key in text:
        text = text.replace(api_key, REDACTED)
    return redact(text)


def parse_retry_after(headers: Mapping[str, str], *, now: float) -> float | None:
    """Seconds to wait from `Retry-After` (seconds or an HTTP date) or `retry-after-ms`."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(float(value) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(when.timestamp() - now, 0.0)


def _error_fields(raw: bytes) -> tuple[str, str, Any, Any]:
    """(message, type, param, code) from an error body in any common shape, or empty."""
    try:
        obj = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        obj = None
    # Some OpenAI-compatible servers (Gemini's) wrap the envelope in a list.
    if isinstance(obj, list) and obj:
        obj = obj[0]
    if not isinstance(obj, dict):
        return "", "", None, None
    # OpenAI: {"error": {"message", "type", "param", "code"}}
    # Anthropic: {"type": "error", "error": {"type", "message"}}
    error = obj.get("error")
    if isinstance(error, dict):
        message = error.get("message")
        code = error.get("code")
        return (
            message if isinstance(message, str) else "",
            str(error.get("type") or ""),
            error.get("param"),
            code if isinstance(code, str | int) else None,
        )
    if isinstance(error, str):  # {"error": "text"} (Ollama, some proxies)
        return error, "", None, None
    for name in ("message", "detail"):  # {"message": ...} / FastAPI-style {"detail": ...}
        value = obj.get(name)
        if isinstance(value, str):
            return value, "", None, None
    return "", "", None, None


def _describe_body(raw: bytes) -> str:
    head = raw[:64].lstrip().lower()
    if not head:
        return "empty body"
    if head.startswith((b"<!doctype", b"<html", b"<")):
        return "HTML error page"
    return "non-JSON body"


def describe_error_body(raw: bytes, api_key: str) -> str:
    """A short, scrubbed description of an error body: its message, or what it looks like."""
    message = _error_fields(raw)[0]
    return scrub(message, api_key) if message else _describe_body(raw)


def error_envelope(
    status: int, message: str, error_type: str = "", param: Any = None, code: Any = None
) -> bytes:
    """An error in OpenAI's envelope, the only shape Switchyard's callers see."""
    return orjson.dumps(
        {
            "error": {
                "message": message[:MAX_ENVELOPE_MESSAGE_CHARS],
                "type": error_type or _DEFAULT_ERROR_TYPES.get(status, "upstream_error"),
                "param": param,
                "code": code,
            }
        }
    )


def http_error(
    status: int, headers: Mapping[str, str], raw: bytes, *, api_key: str, now: float
) -> UpstreamError:
    """The error for a non-2xx answer. 4xx keep their error, rebuilt in OpenAI's envelope.

    The envelope is rebuilt rather than passed through even for OpenAI-protocol upstreams: the
    message goes to the caller, and a platform key echoed by the upstream must not.
    """
    if 300 <= status < 400:
        # Redirects are never followed: the request carries the provider key, and a redirect
        # to another host would hand it over.
        return UpstreamError(ErrorKind.HTTP, f"HTTP {status}: redirect not followed", status=status)
    message, error_type, param, code = _error_fields(raw)
    message = scrub(message, api_key) if message else _describe_body(raw)
    body = None
    if 400 <= status < 500:
        body = error_envelope(
            status, message, error_type, param if isinstance(param, str) else None, code
        )
    return UpstreamError(
        ErrorKind.HTTP,
        f"HTTP {status}: {message}",
        status=status,
        retry_after=parse_retry_after(headers, now=now),
        body=body,
    )


def protocol_error(message: str) -> UpstreamError:
    return UpstreamError(ErrorKind.PROTOCOL, message)


def not_json_error(raw: bytes) -> UpstreamError:
    """A 2xx whose body is not the JSON we asked for."""
    if not raw.strip():
        return protocol_error("empty response body")
    if raw.lstrip()[:1] == b"<":
        return protocol_error("HTML instead of JSON")
    return protocol_error("malformed or truncated JSON")


def classify_exception(exc: BaseException, *, reading: bool = False) -> UpstreamError:
    """The error for what aiohttp (or the loop) raised while sending (or `reading` a 2xx body).

    Order matters: aiohttp's timeout errors also derive from its connection errors.
    """
    if isinstance(exc, UpstreamError):
        return exc
    refused = _refusal(exc)
    if refused is not None:
        return UpstreamError(ErrorKind.BLOCKED, f"address not allowed: {refused.reason}")
    if isinstance(exc, TimeoutError):  # asyncio's and aiohttp's timeouts are TimeoutErrors
        return UpstreamError(ErrorKind.TIMEOUT, "timed out")
    if reading or isinstance(exc, aiohttp.ClientPayloadError):
        # The upstream accepted the request and started answering: whatever broke now broke
        # the answer, not the connection attempt.
        return protocol_error("response body cut short")
    if isinstance(exc, aiohttp.ClientResponseError):
        # Raised for a response head aiohttp cannot parse: the upstream answered, badly.
        return protocol_error("malformed HTTP response")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return UpstreamError(ErrorKind.CONNECT, "server disconnected")
    if isinstance(exc, aiohttp.ClientConnectorError):
        # str(exc) names host and port and the OS reason, never headers.
        return UpstreamError(ErrorKind.CONNECT, redact(str(exc)) or "cannot connect")
    if isinstance(exc, aiohttp.ClientOSError | OSError):
        return UpstreamError(ErrorKind.CONNECT, f"connection error: {type(exc).__name__}")
    if isinstance(exc, aiohttp.InvalidURL):
        return UpstreamError(ErrorKind.CONNECT, "invalid upstream URL")
    return UpstreamError(ErrorKind.CONNECT, f"client error: {type(exc).__name__}")


def _refusal(exc: BaseException) -> DestinationRefused | None:
    """The guard's refusal behind `exc`: aiohttp wraps what its resolver step raises in a
    ClientConnectorError (`os_error`)."""
    for candidate in (exc, getattr(exc, "os_error", None), exc.__cause__):
        if isinstance(candidate, DestinationRefused):
            return candidate
    return None


def bad_request(message: str, param: str | None = None) -> UpstreamError:
    """A request this protocol cannot express: the caller's error, as the upstream's 400 is."""
    return UpstreamError(
        ErrorKind.HTTP,
        f"HTTP 400: {message}",
        status=400,
        body=error_envelope(400, message, "invalid_request_error", param),
    )
