"""Streaming: relay the first candidate that starts, chunk by chunk, and account for it.

Fallback happens only before the first byte reaches the client; a client that leaves
cancels the upstream call, and the attempt is recorded however the stream ended.
"""

from __future__ import annotations

import asyncio
import time

import orjson

from providers.adapters import adapter_for
from providers.adapters.base import ErrorKind, StreamState, UpstreamError, Usage
from routing.gateway import tokens
from routing.gateway.attempts import (
    Call,
    all_failed,
    attempt_cost,
    candidates,
    is_caller_error,
    on_failure,
    record_attempt,
    response_headers,
)
from routing.gateway.http import SSE_HEADERS, send_json
from routing.gateway.requests import ChatFacts
from routing.gateway.state import GatewayState
from routing.router import ModelOption
from usage.choices import Outcome


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


async def stream(
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
        async for attempt, option, ref, target in candidates(state, call, chain, rejected):
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
                record_attempt(
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
                await on_failure(state, call, attempt, option, ref, exc, started, rejected)
                if is_caller_error(exc):
                    await send_json(
                        send,
                        exc.status,
                        exc.body or b"{}",
                        response_headers(call, state, option, attempt, None),
                    )
                    return
                continue
            except StopAsyncIteration:
                exc = UpstreamError(ErrorKind.PROTOCOL, "empty stream")
                await on_failure(state, call, attempt, option, ref, exc, started, rejected)
                continue
            await _relay(
                state, call, attempt, option, ref, body, events, first, stream_state, started, send
            )
            return
        raise all_failed(call)
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
            "headers": [*SSE_HEADERS, *response_headers(call, state, option, attempt, None)],
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
        cost = attempt_cost(option, usage)
        record_attempt(
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
