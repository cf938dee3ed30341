"""One pipelined Redis connection for the gateway's limit scripts.

Why not redis-py's asyncio client here: under load its per-call machinery (a pool checkout,
the retry wrapper, command packing in Python, Script bookkeeping, response callbacks) cost
~185 µs of CPU per request, about a fifth of the gateway's (py-spy at c=16). The two calls
the gateway makes per request need none of it. Every coroutine writes its command straight
onto one connection and waits for its own reply; Redis answers in order, so replies are
matched first-in first-out. hiredis (redis-py's own C parser) packs and parses. Everything
else (seeding, sync services, the embedded fakeredis) keeps using redis-py.

Failures surface as redis-py's exception types, so callers handle one family: a lost or
unreachable connection is `redis.ConnectionError` (pending calls fail at once, the next call
reconnects), a reply that does not come within `timeout` is `redis.TimeoutError`, and an
error reply is `redis.ResponseError`.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import ssl
import time
from urllib.parse import unquote, urlsplit

import hiredis
import redis


class _Protocol(asyncio.Protocol):
    def __init__(self, owner: RedisPipe) -> None:
        self.owner = owner
        self.reader = hiredis.Reader(replyError=redis.ResponseError)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        pending = self.owner._pending
        while (reply := self.reader.gets()) is not False:
            if not pending:  # a reply nobody asked for: the stream is out of step
                self.owner._abort("unexpected reply from Redis")
                return
            future = pending.popleft()[0]
            if future.done():
                continue  # its caller gave up (cancelled); the reply is still consumed
            if isinstance(reply, redis.ResponseError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._lost(self, exc)


class RedisPipe:
    """`call(*args)` and `evalsha(script, keys, args)` over one shared connection."""

    def __init__(self, url: str, *, timeout: float = 2.0, connect_timeout: float = 1.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"unsupported Redis URL scheme: {parts.scheme!r}")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        self.ssl = ssl.create_default_context() if parts.scheme == "rediss" else None
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        path = parts.path.strip("/")
        self.db = int(path) if path else 0
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._transport: asyncio.Transport | None = None
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future | None = None
        # (future, sent at) in the order commands were written
        self._pending: collections.deque[tuple[asyncio.Future, float]] = collections.deque()
        self._watchdog: asyncio.TimerHandle | None = None
        self._outbox: list[bytes] = []
        # Bumped when a reconnect finds a different Redis server run (a restart: its keys are
        # gone); callers compare it to drop work that belonged to the previous run.
        self.epoch = 0
        self._run_id: bytes | None = None
        self._shas: dict[bytes, bytes] = {}

    # -- commands ----------------------------------------------------------------------

    async def call(self, *args):
        """Send one command and return its reply (hiredis types: bytes, int, list, ...)."""
        if self._transport is None or self._connecting is not None:
            await self._connect()
        return await self._send(hiredis.pack_command(args))

    def send(self, *args) -> asyncio.Future:
        """Write one command now (connected callers only) and return its reply's future.

        For pipelining several commands without waiting in between; await the futures in
        order. Raises ConnectionError when not connected (use `call` first).
        """
        if self._transport is None or self._connecting is not None:
            raise redis.ConnectionError("not connected to Redis")
        return self._send(hiredis.pack_command(args))

    async def evalsha(self, script: bytes, keys: list, args: list):
        """Run a Lua script by its SHA1, loading it on the first NOSCRIPT."""
        sha = self._sha(script)
        try:
            return await self.call(b"EVALSHA", sha, len(keys), *keys, *args)
        except redis.ResponseError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            return await self.call(b"EVAL", script, len(keys), *keys, *args)

    def evalsha_nowait(self, script: bytes, keys: list, args: list) -> asyncio.Future:
        """`evalsha` for a pipelined batch: the script must have been run once already."""
        return self.send(b"EVALSHA", self._sha(script), len(keys), *keys, *args)

    async def ensure_connected(self) -> None:
        # Not before the handshake is over: until then `epoch` may still be the last run's.
        if self._transport is None or self._connecting is not None:
            await self._connect()

    async def aclose(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        self._fail_pending(redis.ConnectionError("connection closed"))

    # -- internals ---------------------------------------------------------------------

    def _sha(self, script: bytes) -> bytes:
        sha = self._shas.get(script)
        if sha is None:
            sha = self._shas[script] = hashlib.sha1(script).hexdigest().encode()  # noqa: S324
        return sha

    def _send(self, packed: bytes) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((future, time.monotonic()))
        # Commands issued in one turn of the loop (concurrent requests' admits, a batch of
        # settles) leave in one write: a send on loopback costs more than building them.
        self._outbox.append(packed)
        if len(self._outbox) == 1:
            loop.call_soon(self._flush)
        if self._watchdog is None:
            self._watchdog = loop.call_later(self.timeout, self._check_overdue)
        return future

    def _flush(self) -> None:
        outbox, self._outbox = self._outbox, []
        if self._transport is not None and outbox:
            self._transport.write(outbox[0] if len(outbox) == 1 else b"".join(outbox))

    async def _connect(self) -> None:
        # Concurrent callers share one attempt.
        if self._connecting is not None:
            await asyncio.shield(self._connecting)
            return
        loop = asyncio.get_running_loop()
        self._connecting = loop.create_future()
        try:
            try:
                transport, protocol = await asyncio.wait_for(
                    loop.create_connection(
                        lambda: _Protocol(self), self.host, self.port, ssl=self.ssl
                    ),
                    self.connect_timeout,
                )
            except (OSError, TimeoutError) as exc:
                raise redis.ConnectionError(
                    f"cannot connect to Redis at {self.host}:{self.port}: {exc!r}"
                ) from exc
            self._transport, self._protocol = transport, protocol
            setup = []
            if self.password is not None:
                auth = (self.username, self.password) if self.username else (self.password,)
                setup.append(self._send(hiredis.pack_command((b"AUTH", *auth))))
            if self.db:
                setup.append(self._send(hiredis.pack_command((b"SELECT", self.db))))
            info = self._send(hiredis.pack_command((b"INFO", b"server")))
            for future in setup:
                await future
            self._note_run(await info)
            self._connecting.set_result(None)
        except BaseException as exc:
            if self._transport is not None:
                self._transport.close()
                self._transport = None
            self._connecting.set_exception(
                exc if isinstance(exc, redis.RedisError) else redis.ConnectionError(repr(exc))
            )
            self._connecting.exception()  # retrieved: later waiters re-raise it themselves
            raise
        finally:
            self._connecting = None

    def _note_run(self, info: bytes) -> None:
        for line in info.splitlines():
            if line.startswith(b"run_id:"):
                run_id = line[7:].strip()
                if self._run_id is not None and run_id != self._run_id:
                    self.epoch += 1
                self._run_id = run_id
                return

    def _check_overdue(self) -> None:
        self._watchdog = None
        if not self._pending:
            return
        age = time.monotonic() - self._pending[0][1]
        if age >= self.timeout:
            self._abort(f"no reply from Redis within {self.timeout} s", timeout=True)
            return
        loop = self._pending[0][0].get_loop()
        self._watchdog = loop.call_later(self.timeout - age, self._check_overdue)

    def _abort(self, reason: str, *, timeout: bool = False) -> None:
        if self._transport is not None:
            self._transport.abort()
            self._transport = None
        error = redis.TimeoutError(reason) if timeout else redis.ConnectionError(reason)
        self._fail_pending(error)

    def _lost(self, protocol: _Protocol, exc: Exception | None) -> None:
        if protocol is not self._protocol:
            return  # an old connection's late notice
        self._transport = None
        self._fail_pending(redis.ConnectionError(f"Redis connection lost: {exc!r}"))

    def _fail_pending(self, error: Exception) -> None:
        self._outbox = []
        pending, self._pending = self._pending, collections.deque()
        for future, _ in pending:
            if not future.done():
                future.set_exception(error)
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
