"""Open-loop load: requests start at fixed times whatever the answers do (aiohttp).

Request i is due at start + i / rate. Its latency is measured from that due time, not from
when it was actually sent, so a gateway (or a client) that falls behind shows up in the
percentiles instead of silently lowering the offered rate (coordinated omission). The total
is bounded: rate x seconds requests, each with its own timeout, and at most `max_in_flight`
at once (a request that would exceed it is counted as not sent, never queued).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import asdict, dataclass

import aiohttp

from tests.load.streaming import percentile, run_async


@dataclass
class OpenLoopResult:
    rate: float
    seconds: float
    offered: int
    sent: int
    ok: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    max_send_lag_ms: float  # how late the generator itself was at worst
    peak_in_flight: int
    errors: dict[str, int]
    duration_s: float

    @property
    def served_pct(self) -> float:
        return 100.0 * self.ok / self.offered if self.offered else 0.0

    @property
    def failed(self) -> int:
        return self.offered - self.ok

    def as_dict(self) -> dict:
        return asdict(self) | {"served_pct": round(self.served_pct, 3)}


async def _run(
    url: str,
    body: bytes,
    headers: dict[str, str],
    rate: float,
    seconds: float,
    timeout_s: float,
    max_in_flight: int,
) -> OpenLoopResult:
    total = int(rate * seconds)
    latencies: list[float] = []
    errors: Counter = Counter()
    lag = 0.0
    state = {"in_flight": 0, "peak": 0, "sent": 0}
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    tasks: set[asyncio.Task] = set()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        loop = asyncio.get_running_loop()

        async def one(due: float) -> None:
            state["in_flight"] += 1
            state["peak"] = max(state["peak"], state["in_flight"])
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status == 200:
                        latencies.append((loop.time() - due) * 1000)
                    else:
                        errors[f"http {response.status}"] += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors[type(exc).__name__] += 1
            finally:
                state["in_flight"] -= 1

        start = loop.time() + 0.05
        began = time.perf_counter()
        for i in range(total):
            due = start + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                lag = max(lag, -delay)
            if state["in_flight"] >= max_in_flight:
                errors["not sent (client in-flight cap)"] += 1
                continue
            state["sent"] += 1
            task = loop.create_task(one(due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(set(tasks), timeout=timeout_s + 5)
    return OpenLoopResult(
        rate=rate,
        seconds=seconds,
        offered=total,
        sent=state["sent"],
        ok=len(latencies),
        p50_ms=round(percentile(latencies, 50), 1),
        p90_ms=round(percentile(latencies, 90), 1),
        p99_ms=round(percentile(latencies, 99), 1),
        p999_ms=round(percentile(latencies, 99.9), 1),
        max_ms=round(max(latencies, default=0.0), 1),
        max_send_lag_ms=round(lag * 1000, 1),
        peak_in_flight=state["peak"],
        errors=dict(errors),
        duration_s=round(time.perf_counter() - began, 3),
    )


def run(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    rate: float,
    seconds: float,
    timeout_s: float = 10.0,
    max_in_flight: int = 5000,
) -> OpenLoopResult:
    return run_async(_run(url, body, headers, rate, seconds, timeout_s, max_in_flight))
