"""Pytest plugin: the LLM upstream simulator as fixtures.

Register with ``pytest_plugins = ["tests.simulator_fixtures"]``. ``simulator`` is one
server for the whole session (a background thread with its own event loop); ``sim``
hands it to a test with an empty request log and fault script.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from providers.simulator import SimulatorThread


@pytest.fixture(scope="session")
def simulator() -> Iterator[SimulatorThread]:
    server = SimulatorThread().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sim(simulator: SimulatorThread) -> SimulatorThread:
    simulator.clear_log()
    simulator.clear_script()
    return simulator
