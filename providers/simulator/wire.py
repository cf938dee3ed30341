"""Minimal HTTP/1.1 framing: request heads in, response bytes out.

Hand-written because the simulator must answer thousands of requests per second on one
core; a framework's routing, middleware and header objects cost more than the fake
model itself. Only what LLM SDKs send is supported: Content-Length request bodies,
keep-alive, `Expect: 100-continue`. Chunked request bodies are refused with 501.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024
LAST_CHUNK = b"0\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

_REASONS = {status.value: status.phrase for status in HTTPStatus}


class HttpError(Exception):
    """The bytes on the wire are not a request we can answer; the connection is closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(slots=True)
class Head:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    content_length: int
    keep_alive: bool
    size: int  # bytes up to and including the blank line

    @property
    def expects_continue(self) -> bool:
        return self.headers.get("expect", "").lower() == "100-continue"


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # names lower-cased; a repeated header keeps its last value
    body: bytes
    keep_alive: bool


def parse_head(buf: bytearray) -> Head | None:
    """Parse the request head at the front of `buf`; None until the blank line arrived."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > MAX_HEAD_BYTES:
            raise HttpError(431, "request head too large")
        return None
    lines = buf[:end].decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ", 2)
    except ValueError:
        raise HttpError(400, "malformed request line") from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise HttpError(400, "malformed header line")
        headers[name.strip().lower()] = value.strip()
    if "transfer-encoding" in headers:
        raise HttpError(501, "chunked request bodies are not supported")
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise HttpError(400, "bad Content-Length") from None
    if length < 0:
        raise HttpError(400, "bad Content-Length")
    if length > MAX_BODY_BYTES:
        raise HttpError(413, "request body too large")
    connection = headers.get("connection", "").lower()
    # HTTP/1.1 keeps connections open unless told otherwise; HTTP/1.0 only if asked.
    keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    path, _, query = target.partition("?")
    return Head(method.upper(), path, query, headers, length, keep_alive, end + 4)


def response_head(
    status: int,
    headers: list[tuple[str, str]],
    *,
    length: int | None,
    keep_alive: bool,
) -> bytes:
    """Status line and headers; `length=None` means a chunked body follows."""
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}", "server: switchyard-sim"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    if length is None:
        lines.append("transfer-encoding: chunked")
    else:
        lines.append(f"content-length: {length}")
    if not keep_alive:
        lines.append("connection: close")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)
