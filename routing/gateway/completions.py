"""POST /v1/chat/completions and /v1/embeddings: one handler, read top to bottom.

parse -> authenticate -> resolve settings and keys -> route -> call with fallback ->
record usage -> respond. Each step is a small function here or in a sibling module.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
from django.utils import timezone

from providers.adapters import adapter_for
from providers.adapters.base import ErrorKind, StreamState, Target, UpstreamError, Usage
from routing.gateway import tokens
from routing.gateway.auth import authenticate
from routing.gateway.errors import GatewayError
from routing.gateway.events import report_invalid_key
from routing.gateway.http import SSE_HEADERS, read_body, send_json
from routing.gateway.limits import credit_debit
from routing.gateway.requests import (
    ChatFacts,
    apply_settings,
    parse_chat,
    parse_embeddings,
    parse_json,
)
from routing.gateway.snapshot import APIKeyInfo, KeyRef, Settings, Snapshot, TenantInfo
from routing.gateway.state import GatewayState
from routing.router import ModelOption, RouteRequest, UnknownModel, level_for, route
from tenants.choices import Scope
from usage.choices import Outcome, PowerLevelCode
from usage.entries import UsageEntry
from usage.money import token_cost

logger = logging.getLogger(__name__)

LEVEL_CODES = {
    "eco": PowerLevelCode.ECO,
    "balanced": PowerLevelCode.BALANCED,
    "precision": PowerLevelCode.PRECISION,
}
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


def _resolve_caller(
    snapshot: Snapshot, key: APIKeyInfo, tenant: TenantInfo, user: str | None
) -> Call:
    """Who the request acts for: a key bound to an end user ignores `user`."""
    external_id = key.end_user_external_id or user
    end_user = snapshot.end_users.get((tenant.id, external_id)) if external_id else None
    end_user_id = key.end_user_id or (end_user.id if end_user else None)
    return Call(
        request_id=uuid.uuid4(),
        key=key,
        tenant=tenant,
        end_user_id=end_user_id,
        end_user_external_id=external_id,
        settings=snapshot.settings_for(tenant, end_user_id),
        keys=snapshot.keys_for(tenant, end_user_id),
        power_level=0,
    )


def _chain(state: GatewayState, call: Call, request: RouteRequest) -> list[ModelOption]:
    try:
        chain = route(request, state.snapshot.table)
    except UnknownModel:
        raise GatewayError(
            404,
            f"The model '{request.model}' does not exist. Use GET /v1/models to list models, "
            "or an alias: auto, eco, balanced, precision.",
            code="model_not_found",
            param="model",
        ) from None
    if not chain:
        raise GatewayError(
            503,
            f"No provider can serve '{request.model}' for this caller right now: no usable "
            "provider key, no model that fits the request, or every provider is cooling down.",
            code="all_providers_failed",
            extra={"attempts": []},
        )
    return chain[: state.max_attempts]


def _route_request(state: GatewayState, call: Call, model: str, **facts: Any) -> RouteRequest:
    level = call.settings.power_level
    alias_level = level_for(model, level)
    call.power_level = LEVEL_CODES.get(alias_level, PowerLevelCode.EXPLICIT) if alias_level else 0
    health = state.health
    return RouteRequest(
        model=model,
        level=level,
        keyed_providers=frozenset(call.keys),
        auto_failover=call.settings.auto_failover,
        cooling=health.cooling,
        probing=health.probing,
        error_rates=health.error_rates,
        preferred_providers=call.settings.preferred_providers,
        preferred_models=call.settings.preferred_models,
        **facts,
    )


def _target(snapshot: Snapshot, option: ModelOption, ref: KeyRef) -> Target:
    provider = snapshot.providers[option.provider_id]
    return Target(
        protocol=provider.protocol,
        kind=provider.kind,
        base_url=provider.base_url,
        api_key=ref.secret,
        model_id=option.model_id,
        options=provider.options,
    )


def _cost(option: ModelOption, usage: Usage) -> Decimal:
    return token_cost(
        input_tokens=usage.input_tokens,
        cached_tokens=usage.cached_tokens,
        output_tokens=usage.output_tokens,
        input_price=option.input_price,
        cached_price=option.cached_price,
        output_price=option.output_price,
    )


def _record(
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


def _failure_outcome(exc: UpstreamError) -> int:
    if exc.kind == ErrorKind.TIMEOUT:
        return Outcome.TIMEOUT
    if exc.kind == ErrorKind.CONNECT:
        return Outcome.CONNECT_ERROR
    if exc.status is not None and 400 <= exc.status < 500 and exc.status not in FALLBACK_STATUSES:
        return Outcome.CLIENT_ERROR
    return Outcome.UPSTREAM_ERROR


def _is_caller_error(exc: UpstreamError) -> bool:
    """A 4xx the provider blames on the request: returned as is, never retried elsewhere."""
    return (
        exc.kind == ErrorKind.HTTP
        and exc.status is not None
        and 400 <= exc.status < 500
        and exc.status not in FALLBACK_STATUSES
    )


async def _on_failure(
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
    _record(
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
    if _is_caller_error(exc):
        return
    if exc.status in KEY_REJECTED:
        rejected_keys.add(ref.id)
        state.spawn(asyncio.to_thread(report_invalid_key, ref.id, call.tenant.id, exc.message))
    else:
        state.health.record_failure(option.provider_id)
    logger.info(
        "gateway.attempt_failed",
        extra={"request_id": str(call.request_id), "provider": provider.slug, "status": exc.status},
    )


async def _backoff(state: GatewayState, attempt: int) -> None:
    """Exponential backoff with full jitter between attempts (50 ms, 100 ms, ... by default)."""
    if state.backoff_seconds > 0:
        await asyncio.sleep(random.uniform(0, state.backoff_seconds * 2 ** (attempt - 1)))  # noqa: S311


def _all_failed(call: Call) -> GatewayError:
    timeouts = all(a["status"] is None and "timed out" in (a["error"] or "") for a in call.attempts)
    return GatewayError(
        504 if timeouts else 502,
        f"Every candidate provider failed ({len(call.attempts)} attempts).",
        code="upstream_timeout" if timeouts else "all_providers_failed",
        extra={"attempts": call.attempts},
    )


def _headers(
    call: Call, state: GatewayState, option: ModelOption, attempts: int, cost: Decimal | None
):
    provider = state.snapshot.providers[option.provider_id]
    headers = [
        (b"x-request-id", call.request_id.hex.encode()),
        (b"x-switchyard-provider", provider.slug.encode()),
        (b"x-switchyard-model", option.name.encode()),
        (b"x-switchyard-attempts", str(attempts).encode()),
    ]
    if cost is not None:
        headers.append((b"x-switchyard-cost-usd", str(cost).encode()))
    headers.extend(call.limit_headers)
    return headers


def _estimate_json_usage(body: dict[str, Any], response: bytes) -> Usage:
    try:
        message = orjson.loads(response)["choices"][0]["message"]
        text = (message.get("content") or "") + orjson.dumps(
            message.get("tool_calls") or ""
        ).decode()
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
        text = ""
    return Usage(
        input_tokens=tokens.count_messages(body.get("messages", ())),
        output_tokens=tokens.count_text(text),
        is_estimated=True,
    )


async def chat_completions(state: GatewayState, scope: dict, receive, send) -> None:
    raw = await read_body(receive, state.max_body)
    snapshot = state.snapshot
    key, tenant = authenticate(scope, snapshot, Scope.COMPLETIONS)
    body = parse_json(raw)
    facts = parse_chat(body)
    call = _resolve_caller(snapshot, key, tenant, facts.user)
    apply_settings(body, facts, call.settings)
    chain = _chain(
        state,
        call,
        _route_request(
            state,
            call,
            facts.model,
            prompt_tokens=facts.prompt_tokens,
            max_output_tokens=facts.max_tokens or 0,
            needs_tools=facts.needs_tools,
            needs_vision=facts.needs_vision,
            needs_json=facts.needs_json,
        ),
    )
    reservation = await _admit(state, call, chain, facts.prompt_tokens, facts.max_tokens)
    try:
        if facts.stream:
            call.is_stream = True
            await _stream(state, call, chain, body, facts, receive, send)
        else:
            await _complete(state, call, chain, body, send)
    finally:
        _settle(state, call, reservation)


async def _admit(
    state: GatewayState, call: Call, chain, prompt_tokens: int, max_tokens: int | None
):
    """Rate limits, caps and credits: 429 / 402 here, before any upstream call."""
    plan, seeds = state.limits.plan_for(
        tenant=call.tenant,
        key_id=call.key.id,
        key_rpm=call.key.requests_per_minute,
        end_user_external_id=call.end_user_external_id,
        chain=chain,
        keys=call.keys,
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        now_ms=int(time.time() * 1000),
    )
    reservation = await state.limits.admit(
        plan, seeds, call.tenant, prompt_tokens + (max_tokens or 0)
    )
    if reservation is not None:
        call.limit_headers = reservation.headers
    return reservation


def _settle(state: GatewayState, call: Call, reservation) -> None:
    """Replace the reservation by what the attempts cost (in the background)."""
    if reservation is not None:
        state.spawn(
            state.limits.settle(
                reservation, cost=call.cost_usd, tokens=call.tokens, debit=call.debit_usd
            )
        )


async def _complete(
    state: GatewayState, call: Call, chain: list[ModelOption], body: dict, send
) -> None:
    rejected: set[int] = set()
    for attempt, option in enumerate(chain, 1):
        ref = call.keys[option.provider_id]
        if ref.id in rejected:
            continue
        if attempt > 1:
            await _backoff(state, attempt - 1)
        target = _target(state.snapshot, option, ref)
        started = time.perf_counter()
        try:
            result = await adapter_for(target.protocol).chat(
                state.session, target, body, timeout=state.timeout
            )
        except UpstreamError as exc:
            await _on_failure(state, call, attempt, option, ref, exc, started, rejected)
            if _is_caller_error(exc):
                await send_json(
                    send,
                    exc.status,
                    exc.body or b"{}",
                    _headers(call, state, option, attempt, None),
                )
                return
            continue
        usage = result.usage or _estimate_json_usage(body, result.body)
        cost = _cost(option, usage)
        _record(
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
        await send_json(send, 200, result.body, _headers(call, state, option, attempt, cost))
        return
    raise _all_failed(call)


async def _watch_disconnect(receive, disconnected: asyncio.Event, task: asyncio.Task) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            disconnected.set()
            task.cancel()
            return


def _stream_usage(state_: StreamState, body: dict) -> Usage:
    if state_.usage is not None:
        return state_.usage
    return Usage(
        input_tokens=tokens.count_messages(body.get("messages", ())),
        output_tokens=tokens.count_text("".join(state_.text_parts)),
        is_estimated=True,
    )


def _sse_error(message: str, code: str) -> bytes:
    return (
        b"data: "
        + orjson.dumps(
            {"error": {"message": message, "type": "api_error", "param": None, "code": code}}
        )
        + b"\n\n"
    )


async def _stream(
    state: GatewayState,
    call: Call,
    chain: list[ModelOption],
    body: dict,
    facts: ChatFacts,
    receive,
    send,
) -> None:
    """Stream the first candidate that starts; fallback only before the first byte is sent."""
    rejected: set[int] = set()
    disconnected = asyncio.Event()
    watcher = asyncio.get_running_loop().create_task(
        _watch_disconnect(receive, disconnected, asyncio.current_task())
    )
    try:
        for attempt, option in enumerate(chain, 1):
            ref = call.keys[option.provider_id]
            if ref.id in rejected:
                continue
            if attempt > 1:
                await _backoff(state, attempt - 1)
            target = _target(state.snapshot, option, ref)
            stream_state = StreamState()
            started = time.perf_counter()
            events = adapter_for(target.protocol).stream(
                state.session,
                target,
                body,
                stream_state,
                timeout=state.timeout,
                include_usage=facts.include_usage,
            )
            try:
                first = await anext(events)
            except asyncio.CancelledError:
                await events.aclose()
                _record(
                    state,
                    call,
                    attempt,
                    option,
                    ref,
                    Outcome.CLIENT_CANCELLED,
                    started,
                    usage=Usage(is_estimated=True),
                    error="client disconnected",
                )
                raise
            except UpstreamError as exc:
                await events.aclose()
                await _on_failure(state, call, attempt, option, ref, exc, started, rejected)
                if _is_caller_error(exc):
                    await send_json(
                        send,
                        exc.status,
                        exc.body or b"{}",
                        _headers(call, state, option, attempt, None),
                    )
                    return
                continue
            except StopAsyncIteration:
                exc = UpstreamError(ErrorKind.PROTOCOL, "empty stream")
                await _on_failure(state, call, attempt, option, ref, exc, started, rejected)
                continue
            await _relay(
                state, call, attempt, option, ref, body, events, first, stream_state, started, send
            )
            return
        raise _all_failed(call)
    except asyncio.CancelledError:
        if not disconnected.is_set():
            raise
        asyncio.current_task().uncancel()
    finally:
        watcher.cancel()


async def _relay(
    state, call, attempt, option, ref, body, events, first, stream_state, started, send
) -> None:
    """Pass chunks through as they arrive; record usage however the stream ends."""
    ttft = time.perf_counter()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [*SSE_HEADERS, *_headers(call, state, option, attempt, None)],
        }
    )
    outcome, error, status = Outcome.SUCCESS, "", 200
    try:
        await send({"type": "http.response.body", "body": first, "more_body": True})
        async for chunk in events:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except UpstreamError as exc:
        outcome, error, status = Outcome.STREAM_ERROR, exc.message, exc.status
        state.health.record_failure(option.provider_id)
        await send(
            {
                "type": "http.response.body",
                "body": _sse_error(exc.message, "upstream_stream_error"),
                "more_body": True,
            }
        )
    except asyncio.CancelledError:
        outcome, error = Outcome.CLIENT_CANCELLED, "client disconnected"
        raise
    finally:
        await events.aclose()
        usage = _stream_usage(stream_state, body)
        cost = _cost(option, usage)
        _record(
            state,
            call,
            attempt,
            option,
            ref,
            outcome,
            started,
            usage=usage,
            cost=cost,
            status=status,
            error=error,
            ttft=ttft,
        )
        if outcome == Outcome.SUCCESS:
            state.health.record_success(option.provider_id)
    await send(
        {
            "type": "http.response.body",
            "body": f": x-switchyard-cost-usd={cost}\n\n".encode(),
            "more_body": False,
        }
    )


async def embeddings(state: GatewayState, scope: dict, receive, send) -> None:
    raw = await read_body(receive, state.max_body)
    snapshot = state.snapshot
    key, tenant = authenticate(scope, snapshot, Scope.EMBEDDINGS)
    body = parse_json(raw)
    model, prompt_tokens, user = parse_embeddings(body)
    call = _resolve_caller(snapshot, key, tenant, user)
    request = _route_request(state, call, model, prompt_tokens=prompt_tokens, mode="embedding")
    # Aliases pick among embedding models of the level; an explicit model is taken as is.
    chain = _chain(state, call, request)
    reservation = await _admit(state, call, chain, prompt_tokens, None)
    try:
        await _embed(state, call, chain, body, prompt_tokens, send)
    finally:
        _settle(state, call, reservation)


async def _embed(
    state: GatewayState, call: Call, chain, body: dict, prompt_tokens: int, send
) -> None:
    snapshot = state.snapshot
    rejected: set[int] = set()
    for attempt, option in enumerate(chain, 1):
        ref = call.keys[option.provider_id]
        if ref.id in rejected:
            continue
        target = _target(snapshot, option, ref)
        started = time.perf_counter()
        try:
            result = await adapter_for(target.protocol).embeddings(
                state.session, target, body, timeout=state.timeout
            )
        except UpstreamError as exc:
            await _on_failure(state, call, attempt, option, ref, exc, started, rejected)
            if _is_caller_error(exc):
                await send_json(
                    send,
                    exc.status,
                    exc.body or b"{}",
                    _headers(call, state, option, attempt, None),
                )
                return
            continue
        usage = result.usage or Usage(input_tokens=prompt_tokens, is_estimated=True)
        cost = _cost(option, usage)
        _record(
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
        await send_json(send, 200, result.body, _headers(call, state, option, attempt, cost))
        return
    raise _all_failed(call)
