"""The gateway's Prometheus metrics (SPEC §7's `llm_*`) and the cheap updates the hot path makes.

Label values come only from the configuration snapshot (a provider's slug, a catalog model's
name, a power level's name) or from fixed sets below, never from a request: a model name a
client makes up, an API key or a tenant's secret cannot become a series. A request refused
before it was routed counts under provider "none" and model "unknown".

`Counter.labels()` checks and orders its arguments on every call (about 2 µs); the children
are cached here per label tuple, so a request pays a dict lookup and the increments.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Histogram

from config.logging import redact
from routing.gateway.errors import GatewayError
from usage.choices import Outcome, PowerLevelCode

if TYPE_CHECKING:
    from providers.adapters.base import Usage
    from routing.gateway.attempts import Call
    from routing.gateway.state import GatewayState
    from routing.router import ModelOption

NO_PROVIDER = "none"
UNKNOWN_MODEL = "unknown"
MAX_LABEL_LENGTH = 100

REQUESTS = Counter(
    "llm_requests_total",
    "Completion and embedding requests by the provider and model that answered last, the "
    "power level and the outcome.",
    ["provider", "model", "power_level", "status"],
)
# LLM calls take from a fraction of a second to minutes; the default buckets stop at 10 s.
REQUEST_DURATION = Histogram(
    "llm_request_duration_seconds",
    "Time from the gateway receiving a routed request to its last byte, fallbacks included.",
    ["provider"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300),
)
TIME_TO_FIRST_TOKEN = Histogram(
    "llm_time_to_first_token_seconds",
    "Streams: time from the gateway receiving the request to the first chunk from upstream.",
    ["provider"],
    buckets=(0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30),
)
TOKENS = Counter(
    "llm_tokens_total",
    "Tokens of every attempt by type (input, cached, output); estimated where the provider "
    "reported none.",
    ["provider", "type"],
)
COST = Counter(
    "llm_cost_usd_total",
    "What the attempts cost at catalog prices, in US dollars.",
    ["provider"],
)
FALLBACKS = Counter(
    "llm_fallbacks_total",
    "Attempts on a next candidate after one failed: the provider that failed, the one tried "
    "next and why (5xx, 429, timeout, auth, connection, 4xx, protocol).",
    ["primary", "fallback", "reason"],
)

STATUSES = {
    Outcome.SUCCESS: "success",
    Outcome.UPSTREAM_ERROR: "upstream_error",
    Outcome.TIMEOUT: "timeout",
    Outcome.CONNECT_ERROR: "connection_error",
    Outcome.CLIENT_CANCELLED: "cancelled",
    Outcome.CLIENT_ERROR: "client_error",
    Outcome.STREAM_ERROR: "stream_error",
}
# Requests the gateway answered itself, before or without an upstream attempt.
REFUSALS = {
    400: "invalid_request",
    401: "auth_error",
    402: "insufficient_quota",
    403: "auth_error",
    404: "model_not_found",
    405: "invalid_request",
    413: "invalid_request",
    429: "rate_limited",
    502: "upstream_error",
    503: "unavailable",
    504: "timeout",
}
LEVELS = {
    PowerLevelCode.EXPLICIT: "explicit",
    PowerLevelCode.ECO: "eco",
    PowerLevelCode.BALANCED: "balanced",
    PowerLevelCode.PRECISION: "precision",
}


@dataclass(slots=True)
class _Request:
    """What one request's attempts tell the handler's wrapper, which counts the request once."""

    started: float
    labels: tuple[str, str, str, str] | None = None
    failed: tuple[str, str] | None = None  # (provider, reason) of the last failed attempt


_current: ContextVar[_Request | None] = ContextVar("switchyard_metrics_request", default=None)
_requests: dict[tuple[str, str, str, str], Any] = {}
_durations: dict[str, Any] = {}
_ttfts: dict[str, Any] = {}
_tokens: dict[tuple[str, str], Any] = {}
_costs: dict[str, Any] = {}
_fallbacks: dict[tuple[str, str, str], Any] = {}


def _child(cache: dict, metric, key):
    """The labelled child for `key`, created once (label values are scrubbed on creation)."""
    child = cache.get(key)
    if child is None:
        values = key if isinstance(key, tuple) else (key,)
        child = cache[key] = metric.labels(*(redact(v)[:MAX_LABEL_LENGTH] for v in values))
    return child


def fallback_reason(outcome: int, status: int | None) -> str:
    """The class of failure that made the gateway try the next candidate."""
    if outcome == Outcome.TIMEOUT:
        return "timeout"
    if outcome == Outcome.CONNECT_ERROR:
        return "connection"
    if status is None:
        return "protocol"
    if status in (401, 403):
        return "auth"
    if status == 429:
        return "429"
    return "5xx" if status >= 500 else "4xx"


def measured(handler: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Count each request handled by `handler` once, with its final outcome and duration."""

    @functools.wraps(handler)
    async def wrapper(state: GatewayState, scope: dict, receive, send) -> None:
        request = _Request(time.perf_counter())
        token = _current.set(request)
        refused = "internal_error"
        try:
            await handler(state, scope, receive, send)
            refused = "no_attempt"
        except GatewayError as exc:
            refused = REFUSALS.get(exc.status, "error")
            raise
        except asyncio.CancelledError:
            refused = "cancelled"
            raise
        finally:
            _current.reset(token)
            labels = request.labels or (NO_PROVIDER, UNKNOWN_MODEL, NO_PROVIDER, refused)
            _child(_requests, REQUESTS, labels).inc()
            if request.labels is not None:  # a refusal's few µs would skew the latencies
                _child(_durations, REQUEST_DURATION, labels[0]).observe(
                    time.perf_counter() - request.started
                )

    return wrapper


def attempt_recorded(
    state: GatewayState,
    call: Call,
    option: ModelOption,
    outcome: int,
    status: int | None,
    usage: Usage,
    cost: Decimal,
    ttft: float | None,
) -> None:
    """Account for one finished upstream attempt: tokens, cost, TTFT, a fallback into it, and
    (for the request's count) its outcome, which the last attempt decides."""
    # .get: a metric must never fail a request, even one that outlived its snapshot.
    known = state.snapshot.providers.get(option.provider_id)
    provider = known.slug if known is not None else NO_PROVIDER
    request = _current.get()
    if usage.input_tokens:
        _child(_tokens, TOKENS, (provider, "input")).inc(usage.input_tokens)
    if usage.cached_tokens:
        _child(_tokens, TOKENS, (provider, "cached")).inc(usage.cached_tokens)
    if usage.output_tokens:
        _child(_tokens, TOKENS, (provider, "output")).inc(usage.output_tokens)
    if cost:
        _child(_costs, COST, provider).inc(float(cost))
    if request is None:  # not inside a measured handler: nothing to count per request
        return
    if ttft is not None:
        _child(_ttfts, TIME_TO_FIRST_TOKEN, provider).observe(ttft - request.started)
    if request.failed is not None:
        _child(_fallbacks, FALLBACKS, (request.failed[0], provider, request.failed[1])).inc()
    request.labels = (
        provider,
        option.name,
        LEVELS.get(call.power_level, "explicit"),
        STATUSES.get(outcome, "error"),
    )
    request.failed = (
        None
        if outcome in (Outcome.SUCCESS, Outcome.CLIENT_ERROR, Outcome.CLIENT_CANCELLED)
        else (provider, fallback_reason(outcome, status))
    )
