"""Run a Simulator on its own event loop in a background thread, for synchronous tests.

Every accessor hops onto the simulator's loop, so the log and the script are only
ever touched from one thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable
from typing import Any

from providers.simulator.server import Simulator, SimulatorConfig

CALL_TIMEOUT = 10.0


async def _invoke[T](fn: Callable[[], T]) -> T:
    return fn()


class SimulatorThread:
    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        **options: Any,
    ) -> None:
        self.simulator = Simulator(config, **options)
        self._host = host
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SimulatorThread:
        if self._thread is not None:
            raise RuntimeError("simulator thread already started")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=self._run, args=(loop,), name="switchyard-simulator", daemon=True
        )
        thread.start()
        self._loop, self._thread = loop, thread
        future = asyncio.run_coroutine_threadsafe(
            self.simulator.start(self._host, self._port), loop
        )
        try:
            future.result(CALL_TIMEOUT)
        except BaseException:
            self._shutdown_loop()
            raise
        return self

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.close()

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self.simulator.stop(), self._loop).result(CALL_TIMEOUT)
        self._shutdown_loop()

    def _shutdown_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(CALL_TIMEOUT)

    def __enter__(self) -> SimulatorThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _call[T](self, fn: Callable[[], T]) -> T:
        if self._loop is None:
            raise RuntimeError("simulator thread is not running")
        return asyncio.run_coroutine_threadsafe(_invoke(fn), self._loop).result(CALL_TIMEOUT)

    # -- the Simulator's accessors, made thread-safe -----------------------------------

    @property
    def config(self) -> SimulatorConfig:
        return self.simulator.config

    @property
    def url(self) -> str:
        return self.simulator.url

    @property
    def port(self) -> int:
        return self.simulator.port

    @property
    def host(self) -> str:
        return self.simulator.host

    @property
    def log(self) -> list[dict[str, Any]]:
        return self._call(lambda: self.simulator.log)

    def clear_log(self) -> None:
        self._call(self.simulator.clear_log)

    def script(self, faults: Iterable[str]) -> None:
        faults = list(faults)
        self._call(lambda: self.simulator.script(faults))

    @property
    def pending_script(self) -> list[str]:
        return self._call(lambda: self.simulator.pending_script)

    def clear_script(self) -> None:
        self._call(self.simulator.clear_script)
