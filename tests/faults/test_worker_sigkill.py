"""A web worker killed with SIGKILL under load: every request that got a complete 200 has
exactly one success row once a new process has replayed the journal; requests in flight at
the kill may be recorded or not, never twice; the journal folder ends empty."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from collections import Counter
from pathlib import Path

from tests.factories import CatalogModelFactory
from tests.faults.load import Job, Load, check_recorded, duplicates, tally, usage_rows
from tests.usage.limits_helpers import unthrottled
from tests.world_fixtures import add_provider, platform_key
from usage import journal
from usage.choices import Outcome
from usage.models import UsageRecord

MESSAGES = [{"role": "user", "content": "do not lose me"}]


def segments(folder: Path, pid: int) -> list[Path]:
    return sorted(folder.glob(f"{pid}-*{journal.SUFFIX}"))


def journaled(folder: Path, pid: int) -> int:
    """Entries in `pid`'s segments: one line each."""
    return sum(path.read_bytes().count(b"\n") for path in segments(folder, pid))


def wait_until(predicate, seconds: float, message: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, message
        time.sleep(0.1)


def test_a_worker_killed_under_load_loses_no_completed_response(world, gateway_process):
    # Streams paced at 40 tokens a second (half a second each): some are mid-way at the kill.
    paced = add_provider(world.sim.url, "paced", path="/tps/40")
    platform_key(paced, "sim-platform-paced-0004")
    CatalogModelFactory(provider=paced, model_id="sim-paced", name="sim-paced")
    unthrottled(world)
    folder = journal.directory()
    # Usage stays in memory and the journal: nothing reaches the database before the kill.
    doomed = gateway_process(SWITCHYARD_USAGE_FLUSH_SECONDS="3600")
    bodies = itertools.cycle(
        [
            {"model": "sim-eco", "messages": MESSAGES},
            {"model": "sim-balanced", "messages": MESSAGES},
            {"model": "sim-paced", "messages": MESSAGES, "stream": True},
        ]
    )
    killed: dict[str, float | int] = {}

    async def kill_the_worker(load: Load) -> None:
        await load.wait_for(lambda a: sum(x.ok for x in a) >= 150, 30)
        load.stopped = True  # no new requests; those under way meet the kill
        killed["journaled"] = journaled(folder, doomed.process.pid)
        doomed.process.send_signal(signal.SIGKILL)
        killed["at"] = time.monotonic()
        await asyncio.to_thread(doomed.process.wait, 10)

    load = Load(doomed.url, concurrency=12, pause=0.01)
    answers = asyncio.run(load.run(lambda: Job(world.api_key, next(bodies)), kill_the_worker))

    assert killed["journaled"] >= 150
    assert UsageRecord.objects.filter(tenant=world.tenant).count() == 0  # all still journaled
    # A new process takes the dead one's journal over at start-up.
    rescuer = gateway_process()
    wait_until(lambda: not segments(folder, doomed.process.pid), 30, "the journal stayed")
    rescuer.stop()

    ok = [a for a in answers if a.ok]
    in_flight = [a for a in answers if not a.ok]
    # Only requests cut by the kill failed: no error status.
    assert all(a.status in (None, 200) for a in in_flight), tally(in_flight)
    assert all(a.sent_at < killed["at"] for a in in_flight)
    rows = usage_rows(tenant=world.tenant)
    assert duplicates(rows) == []
    recorded = check_recorded(answers, rows)
    assert recorded["problems"] == []
    assert recorded["counts"]["ok"] == len(ok)
    successes = Counter(
        r.request_id for group in rows.values() for r in group if r.outcome == Outcome.SUCCESS
    )
    assert set(successes.values()) == {1}
    assert len(ok) <= len(successes) <= len(ok) + len(in_flight)
    assert sum(len(g) for g in rows.values()) == len(successes)  # no failed attempts here
    # Every segment was written and deleted; only this test process's own (live) one is left.
    left = [p.name for p in folder.glob(f"*{journal.SUFFIX}")]
    assert [name for name in left if not name.startswith(f"{os.getpid()}-")] == []
