"""The interface every wire-protocol adapter implements.

An adapter speaks one upstream protocol and serves any caller: it knows nothing of tenants,
routing or usage. Its input is an OpenAI-format request body and a `Target` (where, with
which key, which upstream model); its output is OpenAI-format bytes plus the `Usage` the
upstream reported (or None). Errors are `UpstreamError`, classified so the caller can decide
on fallback without parsing messages.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp


@dataclass(frozen=True, slots=True)
class Target:
    """One upstream call's destination."""

    protocol: str  # providers.choices.WireProtocol value
    kind: str  # providers.choices.ProviderKind value (presets: auth header, Azure URLs)
    base_url: str  # up to and including the version, no trailing slash
    api_key: str  # plaintext, never logged
    model_id: str  # the id the upstream expects
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Usage:
    """Token counts of one attempt. `input_tokens` excludes cached ones (never counted twice)."""

    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    is_estimated: bool = False


class ErrorKind:
    CONNECT = "connect"  # refused, reset, DNS: nothing reached the upstream's handler
    TIMEOUT = "timeout"
    HTTP = "http"  # the upstream answered with a non-2xx status
    PROTOCOL = "protocol"  # a 2xx we cannot use: truncated or malformed body, HTML, empty
    # The SSRF guard refused the address (config.netguard): nothing was sent, and nothing
    # will be until the provider's URL or the allow-list changes.
    BLOCKED = "blocked"


class UpstreamError(Exception):
    """An attempt failed. `status` is the upstream's HTTP status where there was one."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        body: bytes | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message[:200]
        self.status = status
        self.retry_after = retry_after
        # For a 400: the error in OpenAI's envelope, returned to the caller as is.
        self.body = body


@dataclass(slots=True)
class ChatResult:
    """A complete (non-streamed) answer: OpenAI chat.completion JSON bytes and its usage."""

    body: bytes
    usage: Usage | None


@dataclass(slots=True)
class StreamState:
    """Filled in while a stream is consumed; read by the caller when it ends or is cut."""

    usage: Usage | None = None
    # Raw text of the completion so far, for estimating tokens when no usage arrives.
    text_parts: list[str] = field(default_factory=list)
    chunks: int = 0
    finished: bool = False  # saw the protocol's end ([DONE] / message_stop)


class Adapter(Protocol):
    async def chat(
        self,
        session: aiohttp.ClientSession,
        target: Target,
        body: dict[str, Any],
        *,
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 - aiohttp applies it per phase
    ) -> ChatResult:
        """Send a non-streamed chat request (`body` in OpenAI's format)."""
        ...

    def stream(
        self,
        session: aiohttp.ClientSession,
        target: Target,
        body: dict[str, Any],
        state: StreamState,
        *,
        timeout: aiohttp.ClientTimeout,
        include_usage: bool,
    ) -> AsyncIterator[bytes]:
        """Yield OpenAI SSE events (b"data: {...}\\n\\n", ending with b"data: [DONE]\\n\\n"),
        each yield holding the whole events of one network read (one or more).

        Raises UpstreamError before the first yield for a failed start, or mid-stream for a
        broken one. Always asks the upstream for usage; yields the usage chunk only when
        `include_usage`. Records usage and text into `state` as it goes.
        """
        ...

    async def embeddings(
        self,
        session: aiohttp.ClientSession,
        target: Target,
        body: dict[str, Any],
        *,
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 - aiohttp applies it per phase
    ) -> ChatResult:
        """Send an embeddings request; OpenAI-format response bytes and usage."""
        ...

    async def list_models(
        self,
        session: aiohttp.ClientSession,
        target: Target,
        *,
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 - aiohttp applies it per phase
    ) -> list[str]:
        """Model ids the upstream offers."""
        ...
