"""The gateway's lean ASGI app for /v1/*: no Django request handling, no DRF, no ORM per request."""

from __future__ import annotations

import asyncio
import logging
import uuid

from config.logging import REQUEST_ID
from routing.gateway.auth import AuthFailures
from routing.gateway.completions import REQUEST_ID_SCOPE_KEY, chat_completions, embeddings
from routing.gateway.errors import GatewayError, envelope
from routing.gateway.http import check_content_length, send_json
from routing.gateway.models_list import list_models
from routing.gateway.state import GatewayState

logger = logging.getLogger(__name__)

ROUTES = {
    ("POST", "/v1/chat/completions"): chat_completions,
    ("POST", "/v1/embeddings"): embeddings,
    ("GET", "/v1/models"): list_models,
}
PATHS = {path for _, path in ROUTES}


class GatewayApp:
    def __init__(self) -> None:
        self.state = GatewayState()
        self.auth_failures = AuthFailures()
        self._starting: asyncio.Lock | None = None

    async def _ensure_started(self) -> None:
        # Servers that skip the lifespan protocol still get a started state on first request.
        if self.state.snapshot is None:
            if self._starting is None:
                self._starting = asyncio.Lock()
            async with self._starting:
                if self.state.snapshot is None:
                    await self.state.start()

    async def __call__(self, scope, receive, send) -> None:
        path = scope["path"].rstrip("/")
        handler = ROUTES.get((scope["method"], path))
        if handler is None:
            if path in PATHS:
                body = envelope(405, f"{scope['method']} is not allowed on {path}.")
                await send_json(send, 405, body)
            else:
                await send_json(
                    send, 404, envelope(404, f"Unknown route {path}.", code="unknown_route")
                )
            return
        await self._ensure_started()
        # Made here, not once the caller is known, so refusals carry one too (header and logs).
        request_id = uuid.uuid4()
        scope[REQUEST_ID_SCOPE_KEY] = request_id
        REQUEST_ID.set(request_id.hex)
        try:
            self.auth_failures.refuse_blocked(scope)
            check_content_length(scope, self.state.max_body)
            await handler(self.state, scope, receive, send)
        except GatewayError as exc:
            if exc.code == "invalid_api_key":
                exc = await self.auth_failures.failed(scope, self.state.redis, exc)
            headers = [*exc.headers, (b"x-request-id", request_id.hex.encode())]
            await send_json(send, exc.status, exc.body(), headers)
        except Exception:  # the boundary: a bug answers 500 in OpenAI's shape, never a traceback
            logger.exception("gateway.unhandled_error", extra={"path": path})
            await send_json(
                send,
                500,
                envelope(500, "Internal error in the gateway.", code="internal_error"),
                [(b"x-request-id", request_id.hex.encode())],
            )

    async def lifespan(self, scope, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._ensure_started()
                except Exception as exc:
                    logger.exception("gateway.startup_failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.state.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return
