"""One client connection: an asyncio Protocol that frames requests and hands them on.

A Protocol instead of streams keeps the common case (a small JSON answer, no delay)
fully synchronous: parse, answer and write inside ``data_received`` without creating
a task. Slow answers (latency, pacing, faults) run as one task per request, during
which further pipelined requests wait in the buffer, as HTTP/1.1 ordering requires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any, cast

from providers.simulator import wire

logger = logging.getLogger(__name__)

# Returns None when it answered synchronously, or a coroutine that will answer.
Handler = Callable[[wire.Request, "Connection"], Coroutine[Any, Any, None] | None]


class Connection(asyncio.Protocol):
    def __init__(
        self,
        handler: Handler,
        connections: set[Connection],
        tasks: set[asyncio.Task[None]],
    ) -> None:
        self._handler = handler
        self._connections = connections
        self._tasks = tasks
        self._loop = asyncio.get_running_loop()
        self._buf = bytearray()
        self._head: wire.Head | None = None
        self._busy = False
        self._paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._transport: asyncio.Transport | None = None
        # Resolved when the peer goes away; slow answers race their sleeps against it.
        self.closed: asyncio.Future[None] = self._loop.create_future()

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, hence cast not assert.
        self._transport = cast(asyncio.Transport, transport)
        self._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        if not self.closed.done():
            self.closed.set_result(None)
        self._wake_drain()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_drain()

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if not self._busy:
            self._process()

    # -- used by the handler -----------------------------------------------------------

    @property
    def is_closing(self) -> bool:
        return self._transport is None or self._transport.is_closing()

    def write(self, data: bytes) -> None:
        if not self.is_closing:
            self._transport.write(data)  # type: ignore[union-attr]

    async def drain(self) -> None:
        """Wait for the socket buffer to empty; ConnectionResetError if the peer left."""
        if self._paused and not self.is_closing:
            self._drain_waiter = self._loop.create_future()
            await self._drain_waiter
        if self.is_closing:
            raise ConnectionResetError("client disconnected")

    async def sleep(self, seconds: float) -> bool:
        """Sleep unless the peer leaves first; True if still connected."""
        if self.is_closing:
            return False
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.closed), seconds)
        return not self.is_closing

    def close(self) -> None:
        """Flush what was written, then close (a FIN, not a reset)."""
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    @property
    def peer(self) -> Any:
        return self._transport.get_extra_info("peername") if self._transport else None

    # -- internals ---------------------------------------------------------------------

    def _wake_drain(self) -> None:
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _next_request(self) -> wire.Request | None:
        if self._head is None:
            self._head = wire.parse_head(self._buf)
            if self._head is None:
                return None
            if self._head.expects_continue and len(self._buf) < self._head.size + (
                self._head.content_length
            ):
                self.write(wire.CONTINUE)
        head = self._head
        end = head.size + head.content_length
        if len(self._buf) < end:
            return None
        body = bytes(self._buf[head.size : end])
        del self._buf[:end]
        self._head = None
        return wire.Request(head.method, head.path, head.query, head.headers, body, head.keep_alive)

    def _process(self) -> None:
        while not self._busy and not self.is_closing:
            try:
                request = self._next_request()
            except wire.HttpError as err:
                body = err.message.encode()
                headers = [("content-type", "text/plain")]
                head = wire.response_head(err.status, headers, length=len(body), keep_alive=False)
                self.write(head + body)
                self.close()
                return
            if request is None:
                return
            pending = self._handler(request, self)
            if pending is not None:
                self._busy = True
                task = self._loop.create_task(self._finish(pending))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _finish(self, pending: Coroutine[Any, Any, None]) -> None:
        try:
            await pending
        except ConnectionError:
            self.abort()
        except Exception:
            logger.exception("simulator handler failed")
            self.abort()
        finally:
            self._busy = False
        if not self.is_closing:
            self._process()
