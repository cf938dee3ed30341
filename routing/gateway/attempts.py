"""One upstream attempt at a time: recording it, handling its failure, and the fallback loop.

Shared by the JSON handlers (completions, embeddings) and the streaming relay.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.utils import timezone

from providers.adapters.base import ChatResult, ErrorKind, Target, UpstreamError, Usage
from routing.gateway import metrics
from routing.gateway.errors import GatewayError
from routing.gateway.events import report_invalid_key
from routing.gateway.http import send_json
from routing.gateway.limits import credit_debit
from routing.gateway.snapshot import APIKeyInfo, KeyRef, Settings, Snapshot, TenantInfo
from routing.gateway.state import GatewayState
from routing.router import ModelOption
from usage.choices import Outcome
from usage.entries import UsageEntry
from usage.money import token_cost

logger = logging.getLogger(__name__)

# Statuses after which the next candidate is tried (SPEC §2); 401/403 also mark the key.
FALLBACK_STATUSES = frozenset({401, 403, 404, 408, 409, 429})
KEY_REJECTED = frozenset({401, 403})


@dataclass(slots=True)
class Call:
    """One request's caller and bookkeeping."""

    request_id: uuid.UUID
    key: APIKeyInfo
    tenant: TenantInfo
    end_user_id: int | None
    end_user_external_id: str | None
    settings: Settings
    keys: dict[int, KeyRef]
    power_level: int
    is_stream: bool = False
    attempts: list[dict[str, Any]] = field(default_factory=list)
    # Totals over every attempt, for settling the reservation.
    cost_usd: Decimal = Decimal(0)
    debit_usd: Decimal = Decimal(0)
    tokens: int = 0
    limit_headers: list[tuple[bytes, bytes]] = field(default_factory=list)


def target_for(snapshot: Snapshot, option: ModelOption, ref: KeyRef) -> Target:
    provider = snapshot.providers[option.provider_id]
    return Target(
        protocol=provider.protocol,
        kind=provider.kind,
        base_url=provider.base_url,
        api_key=ref.secret,
        model_id=option.model_id,
        options=provider.options,
    )


def attempt_cost(option: ModelOption, usage: Usage) -> Decimal:
    return token_cost(
        input_tokens=usage.input_tokens,
        cached_tokens=usage.cached_tokens,
        output_tokens=usage.output_tokens,
        input_price=option.input_price,
        cached_price=option.cached_price,
        output_price=option.output_price,
    )


def record_attempt(
    state: GatewayState,
    call: Call,
    attempt: int,
    option: ModelOption,
    ref: KeyRef,
    outcome: int,
    started: float,
    *,
    usage: Usage | None = None,
    cost: Decimal = Decimal(0),
    status: int | None = None,
    error: str = "",
    ttft: float | None = None,
) -> None:
    now = time.perf_counter()
    usage = usage or Usage()
    debit = credit_debit(cost, ref.source, call.tenant.plan) if cost else Decimal(0)
    call.cost_usd += cost
    call.debit_usd += debit
    call.tokens += usage.input_tokens + usage.cached_tokens + usage.output_tokens
    state.sink.add(
        UsageEntry(
            created_at=timezone.now(),
            tenant_id=call.tenant.id,
            request_id=call.request_id,
            attempt=attempt,
            outcome=outcome,
            end_user_id=call.end_user_id,
            end_user_external_id=call.end_user_external_id,
            api_key_id=call.key.id,
            provider_id=option.provider_id,
            provider_key_id=ref.id,
            model_id=option.id,
            key_source=ref.source,
            power_level=call.power_level,
            http_status=status,
            is_stream=call.is_stream,
            is_estimated=usage.is_estimated,
            input_tokens=usage.input_tokens,
            cached_tokens=usage.cached_tokens,
            output_tokens=usage.output_tokens,
            cost_usd=cost,
            credit_debit_usd=debit,
            latency_ms=int((now - started) * 1000),
            ttft_ms=int((ttft - started) * 1000) if ttft is not None else None,
            error=error,
        )
    )
    metrics.attempt_recorded(state, call, option, outcome, status, usage, cost, ttft)


def _failure_outcome(exc: UpstreamError) -> int:
    if exc.kind == ErrorKind.TIMEOUT:
        return Outcome.TIMEOUT
    if exc.kind in (ErrorKind.CONNECT, ErrorKind.BLOCKED):
        return Outcome.CONNECT_ERROR
    if exc.status is not None and 400 <= exc.status < 500 and exc.status not in FALLBACK_STATUSES:
        return Outcome.CLIENT_ERROR
    return Outcome.UPSTREAM_ERROR


def is_caller_error(exc: UpstreamError) -> bool:
    """A 4xx the provider blames on the request: returned as is, never retried elsewhere."""
    return (
        exc.kind == ErrorKind.HTTP
        and exc.status is not None
        and 400 <= exc.status < 500
        and exc.status not in FALLBACK_STATUSES
    )


async def on_failure(
    state: GatewayState,
    call: Call,
    attempt: int,
    option: ModelOption,
    ref: KeyRef,
    exc: UpstreamError,
    started: float,
    rejected_keys: set[int],
) -> None:
    """Record a failed attempt; mark a rejected key; feed the circuit breaker."""
    record_attempt(
        state,
        call,
        attempt,
        option,
        ref,
        _failure_outcome(exc),
        started,
        status=exc.status,
        error=exc.message,
    )
    provider = state.snapshot.providers[option.provider_id]
    call.attempts.append(
        {
            "provider": provider.slug,
            "model": option.name,
            "status": exc.status,
            "error": exc.message,
        }
    )
    if is_caller_error(exc):
        return
    if exc.kind == ErrorKind.BLOCKED:
        # The SSRF guard refused the address: so it would for every model of this provider,
        # and it says nothing of the provider's health. Skipped for the rest of the request.
        rejected_keys.add(ref.id)
    elif exc.status in KEY_REJECTED:
        rejected_keys.add(ref.id)
        state.spawn(asyncio.to_thread(report_invalid_key, ref.id, call.tenant.id, exc.message))
    else:
        state.health.record_failure(option.provider_id)
    logger.info(
        "gateway.attempt_failed",
        extra={"provider": provider.slug, "status": exc.status},  # request_id: config.logging
    )


async def candidates(
    state: GatewayState, call: Call, chain: list[ModelOption], rejected: set[int]
) -> AsyncIterator[tuple[int, ModelOption, KeyRef, Target]]:
    """The chain's attempts in order, skipping keys rejected so far, backing off between."""
    for attempt, option in enumerate(chain, 1):
        ref = call.keys[option.provider_id]
        if ref.id in rejected:
            continue
        if attempt > 1:
            await backoff(state, attempt - 1)
        yield attempt, option, ref, target_for(state.snapshot, option, ref)


async def backoff(state: GatewayState, attempt: int) -> None:
    """Exponential backoff with full jitter between attempts (50 ms, 100 ms, ... by default)."""
    if state.backoff_seconds > 0:
        await asyncio.sleep(random.uniform(0, state.backoff_seconds * 2 ** (attempt - 1)))  # noqa: S311


def all_failed(call: Call) -> GatewayError:
    timeouts = all(a["status"] is None and "timed out" in (a["error"] or "") for a in call.attempts)
    return GatewayError(
        504 if timeouts else 502,
        f"Every candidate provider failed ({len(call.attempts)} attempts).",
        code="upstream_timeout" if timeouts else "all_providers_failed",
        extra={"attempts": call.attempts},
    )


@functools.lru_cache(maxsize=4096)
def header_value(text: str) -> bytes:
    """A catalog name as a header value. Names come from catalog sync (untrusted): one with a
    line break or control character would make the server drop a response already paid for."""
    return "".join(ch for ch in text if ch.isprintable()).encode()


def response_headers(
    call: Call, state: GatewayState, option: ModelOption, attempts: int, cost: Decimal | None
):
    provider = state.snapshot.providers[option.provider_id]
    headers = [
        (b"x-request-id", call.request_id.hex.encode()),
        (b"x-switchyard-provider", provider.slug.encode()),
        (b"x-switchyard-model", header_value(option.name)),
        (b"x-switchyard-attempts", str(attempts).encode()),
    ]
    if cost is not None:
        headers.append((b"x-switchyard-cost-usd", str(cost).encode()))
    headers.extend(call.limit_headers)
    return headers


async def call_with_fallback(
    state: GatewayState,
    call: Call,
    chain: list[ModelOption],
    send,
    request: Callable[[Target], Awaitable[ChatResult]],
    estimate: Callable[[ChatResult], Usage],
) -> None:
    """Try `chain` in order until one answers; send its JSON, or raise when all failed.

    A 4xx the provider blames on the request is returned as is, without fallback.
    """
    rejected: set[int] = set()
    async for attempt, option, ref, target in candidates(state, call, chain, rejected):
        started = time.perf_counter()
        try:
            result = await request(target)
        except UpstreamError as exc:
            await on_failure(state, call, attempt, option, ref, exc, started, rejected)
            if is_caller_error(exc):
                headers = response_headers(call, state, option, attempt, None)
                await send_json(send, exc.status, exc.body or b"{}", headers)
                return
            continue
        usage = result.usage or estimate(result)
        cost = attempt_cost(option, usage)
        record_attempt(
            state,
            call,
            attempt,
            option,
            ref,
            Outcome.SUCCESS,
            started,
            usage=usage,
            cost=cost,
            status=200,
        )
        state.health.record_success(option.provider_id)
        await send_json(
            send, 200, result.body, response_headers(call, state, option, attempt, cost)
        )
        return
    raise all_failed(call)
