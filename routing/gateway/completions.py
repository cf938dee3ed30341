"""POST /v1/chat/completions and /v1/embeddings: one handler each, read top to bottom.

parse -> authenticate -> resolve settings and keys -> route -> limits -> call with
fallback (attempts.py; streaming.py for streams) -> settle -> respond.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from providers.adapters import adapter_for
from providers.adapters.base import ChatResult, Usage
from routing.gateway import metrics, tokens
from routing.gateway.attempts import Call, call_with_fallback
from routing.gateway.auth import authenticate
from routing.gateway.errors import GatewayError
from routing.gateway.http import read_body
from routing.gateway.requests import apply_settings, parse_chat, parse_embeddings, parse_json
from routing.gateway.snapshot import APIKeyInfo, Snapshot, TenantInfo
from routing.gateway.state import GatewayState
from routing.gateway.streaming import stream
from routing.router import ModelOption, RouteRequest, UnknownModel, level_for, route
from tenants.choices import Scope
from usage.choices import PowerLevelCode

LEVEL_CODES = {
    "eco": PowerLevelCode.ECO,
    "balanced": PowerLevelCode.BALANCED,
    "precision": PowerLevelCode.PRECISION,
}

# Where GatewayApp puts the request id it made for the request (an ASGI scope extension key).
REQUEST_ID_SCOPE_KEY = "switchyard.request_id"


def _resolve_caller(
    scope: dict, snapshot: Snapshot, key: APIKeyInfo, tenant: TenantInfo, user: str | None
) -> Call:
    """Who the request acts for: a key bound to an end user ignores `user`."""
    external_id = key.end_user_external_id or user
    end_user = snapshot.end_users.get((tenant.id, external_id)) if external_id else None
    end_user_id = key.end_user_id or (end_user.id if end_user else None)
    return Call(
        request_id=scope[REQUEST_ID_SCOPE_KEY],
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


def _estimate_json_usage(body: dict[str, Any], result: ChatResult) -> Usage:
    try:
        message = orjson.loads(result.body)["choices"][0]["message"]
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


@metrics.measured
async def chat_completions(state: GatewayState, scope: dict, receive, send) -> None:
    raw = await read_body(receive, state.max_body)
    snapshot = state.snapshot
    key, tenant = authenticate(scope, snapshot, Scope.COMPLETIONS)
    body = parse_json(raw)
    facts = parse_chat(body)
    call = _resolve_caller(scope, snapshot, key, tenant, facts.user)
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
    choices = body.get("n") or 1  # validated by parse_chat
    reservation = await _admit(state, call, chain, facts.prompt_tokens, facts.max_tokens, choices)
    try:
        if facts.stream:
            call.is_stream = True
            await stream(state, call, chain, body, facts, receive, send)
        else:
            await call_with_fallback(
                state,
                call,
                chain,
                send,
                lambda target: adapter_for(target.protocol).chat(
                    state.session, target, body, timeout=state.timeout
                ),
                lambda result: _estimate_json_usage(body, result),
            )
    finally:
        _settle(state, call, reservation)


async def _admit(
    state: GatewayState,
    call: Call,
    chain,
    prompt_tokens: int,
    max_tokens: int | None,
    choices: int = 1,
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
        choices=choices,
    )
    reservation = await state.limits.admit(
        plan, seeds, call.tenant, prompt_tokens + (max_tokens or 0) * choices
    )
    if reservation is not None:
        call.limit_headers = reservation.headers
    return reservation


def _settle(state: GatewayState, call: Call, reservation) -> None:
    """Replace the reservation by what the attempts cost (in the background)."""
    if reservation is not None:
        state.limits.settle_later(
            reservation, cost=call.cost_usd, tokens=call.tokens, debit=call.debit_usd
        )


@metrics.measured
async def embeddings(state: GatewayState, scope: dict, receive, send) -> None:
    raw = await read_body(receive, state.max_body)
    snapshot = state.snapshot
    key, tenant = authenticate(scope, snapshot, Scope.EMBEDDINGS)
    body = parse_json(raw)
    model, prompt_tokens, user = parse_embeddings(body)
    call = _resolve_caller(scope, snapshot, key, tenant, user)
    request = _route_request(state, call, model, prompt_tokens=prompt_tokens, mode="embedding")
    # Aliases pick among embedding models of the level; an explicit model is taken as is.
    chain = _chain(state, call, request)
    reservation = await _admit(state, call, chain, prompt_tokens, None)
    try:
        await call_with_fallback(
            state,
            call,
            chain,
            send,
            lambda target: adapter_for(target.protocol).embeddings(
                state.session, target, body, timeout=state.timeout
            ),
            lambda result: Usage(input_tokens=prompt_tokens, is_estimated=True),
        )
    finally:
        _settle(state, call, reservation)
