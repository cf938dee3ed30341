"""A config poll that keeps failing (Redis or the database away) logs once, not every tick."""

from __future__ import annotations

import asyncio
import logging

from routing.gateway.state import GatewayState


def test_a_failing_poll_logs_its_traceback_once_then_its_recovery(caplog):
    state = GatewayState()
    state.poll_seconds = 0.01
    calls = {"n": 0}
    done = asyncio.Event()

    async def read_version() -> str:
        calls["n"] += 1
        if calls["n"] <= 20:
            raise ConnectionError("Redis is away")
        if calls["n"] >= 22:
            done.set()
        return "1"  # back, and nothing changed

    class Snapshot:
        version = "1"
        providers: dict = {}

    class Health:
        async def refresh(self, providers) -> None:
            return None

    async def go() -> None:
        state._read_version = read_version
        state.snapshot = Snapshot()
        state.health = Health()
        task = asyncio.ensure_future(state._poll())
        await asyncio.wait_for(done.wait(), 10)
        task.cancel()

    with caplog.at_level(logging.INFO, logger="routing.gateway.state"):
        asyncio.run(go())
    failures = [r for r in caplog.records if r.getMessage() == "gateway.config_poll_failed"]
    recovered = [r for r in caplog.records if r.getMessage() == "gateway.config_poll_recovered"]
    assert calls["n"] >= 22
    assert len(failures) == 1
    assert failures[0].exc_info is not None
    assert len(recovered) == 1
