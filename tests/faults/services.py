"""Services a fault test can break: a Redis server of its own, and a TCP proxy it can cut.

The shared PostgreSQL and Redis are never touched: a test restarts its own redis-server,
and puts `TcpProxy` between a gateway process and PostgreSQL to make it unreachable.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import threading
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on port {port}")


class RedisServer:
    """A throwaway redis-server on a fixed port: kill it, start it again (empty) on the same
    port, as a restart without persistence does in production."""

    def __init__(self) -> None:
        self.binary = shutil.which("redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(  # noqa: S603 - a throwaway Redis for this test
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        _wait_for_port(self.port)
        return self

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


class TcpProxy:
    """A TCP relay on its own thread and event loop, between a client and `target_port`.

    `cut()` resets every relayed connection and refuses new ones (accepted, then closed at
    once) until `restore()`: the server is unreachable, as when it restarts or the network
    drops. `lose_next_commit_reply()` forwards the next PostgreSQL COMMIT to the server, then
    drops the connection before the server's answer reaches the client: the transaction is
    committed but the client cannot know it.
    """

    COMMIT = b"Q\x00\x00\x00\x0bCOMMIT\x00"  # a simple-protocol Query message: "COMMIT"

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.is_cut = False
        self.refused = 0  # connections turned away while cut
        self.commits_lost = 0
        self._arm_commit = False
        self._tasks: set[asyncio.Task] = set()
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> TcpProxy:
        self._thread.start()
        self._call(self._start())
        return self

    def stop(self) -> None:
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def cut(self) -> None:
        def do() -> None:
            self.is_cut = True
            self._reset_all()

        self._loop.call_soon_threadsafe(do)
        time.sleep(0.05)

    def restore(self) -> None:
        def do() -> None:
            self.is_cut = False

        self._loop.call_soon_threadsafe(do)
        time.sleep(0.05)

    def lose_next_commit_reply(self) -> None:
        self._arm_commit = True

    # -- on the proxy's loop -------------------------------------------------------------

    def _call(self, coro, timeout: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self._reset_all()
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _reset_all(self) -> None:
        for client, upstream in list(self._links):
            client.transport.abort()
            upstream.transport.abort()
        self._links.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if self.is_cut:
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        link = (writer, up_writer)
        self._links.add(link)
        lost_reply = asyncio.Event()
        await asyncio.gather(
            self._pump(reader, up_writer, link, to_server=True, lost_reply=lost_reply),
            self._pump(up_reader, writer, link, to_server=False, lost_reply=lost_reply),
            return_exceptions=True,
        )

    async def _pump(self, reader, writer, link, *, to_server: bool, lost_reply) -> None:
        try:
            while data := await reader.read(65536):
                if not to_server and lost_reply.is_set():
                    continue  # the server's answer never reaches the client
                writer.write(data)
                await writer.drain()
                if to_server and self._arm_commit and self.COMMIT in data:
                    self._arm_commit = False
                    lost_reply.set()
                    # Give the server time to commit, then drop both sides.
                    await asyncio.sleep(0.3)
                    self.commits_lost += 1
                    for side in link:
                        side.transport.abort()
                    self._links.discard(link)
                    return
        except (ConnectionError, OSError):
            pass
        finally:
            self._links.discard(link)
            for side in link:
                side.transport.abort()
