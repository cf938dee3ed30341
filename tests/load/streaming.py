"""Streaming clients on aiohttp: time to first token, and many streams held open at once.

TTFT is measured from just before the request is sent to the arrival of the first line
starting with `data:` (the first SSE event), the same way for the gateway and for the
simulator directly, so the difference is what the gateway adds.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import asdict, dataclass, field

import aiohttp


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def run_async(coro):
    """Run on uvloop when it is there (it is: uvicorn[standard] brings it)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


@dataclass
class StreamResult:
    label: str
    concurrency: int
    streams: int  # completed with [DONE]
    duration_s: float
    ttft_ms: list[float] = field(repr=False)
    total_ms: list[float] = field(repr=False)
    errors: Counter = field(default_factory=Counter)
    server_cpu_us: float | None = None  # CPU of the measured server per stream
    foreign_cpu_pct: float | None = None  # other work on the machine meanwhile

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    @property
    def streams_per_s(self) -> float:
        return self.streams / self.duration_s if self.duration_s else 0.0

    def ttft(self, q: float) -> float:
        return percentile(self.ttft_ms, q)

    def total(self, q: float) -> float:
        return percentile(self.total_ms, q)

    def as_dict(self) -> dict:
        out = asdict(self)
        out.pop("ttft_ms")
        out.pop("total_ms")
        out["errors"] = dict(self.errors)
        out |= {
            "streams_per_s": round(self.streams_per_s, 1),
            "ttft_p50_ms": round(self.ttft(50), 3),
            "ttft_p99_ms": round(self.ttft(99), 3),
            "total_p50_ms": round(self.total(50), 3),
            "total_p99_ms": round(self.total(99), 3),
        }
        return out


async def _one_stream(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> tuple[float | None, float, str | None]:
    """(ttft s, total s, error or None) of one streamed completion read to its end."""
    started = time.perf_counter()
    ttft = None
    finished = False
    async with session.post(url, data=body, headers=headers) as response:
        if response.status != 200:
            await response.read()
            return None, time.perf_counter() - started, f"http {response.status}"
        async for line in response.content:
            if ttft is None and line.startswith(b"data:"):
                ttft = time.perf_counter() - started
            if line.startswith(b"data: [DONE]"):
                finished = True
    total = time.perf_counter() - started
    if ttft is None or not finished:
        return ttft, total, "stream ended without [DONE]"
    return ttft, total, None


async def _ttft(
    label: str, url: str, body: bytes, headers: dict[str, str], concurrency: int, seconds: float
) -> StreamResult:
    result = StreamResult(label, concurrency, 0, 0.0, [], [])
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds

        async def worker() -> None:
            while loop.time() < deadline:
                try:
                    ttft, total, error = await _one_stream(session, url, body, headers)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    result.errors[type(exc).__name__] += 1
                    continue
                if error:
                    result.errors[error] += 1
                    continue
                result.streams += 1
                result.ttft_ms.append(ttft * 1000)
                result.total_ms.append(total * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.duration_s = round(time.perf_counter() - started, 3)
    return result


def ttft(
    label: str, url: str, body: bytes, headers: dict[str, str], concurrency: int, seconds: float
) -> StreamResult:
    """`concurrency` clients streaming back to back for `seconds` (closed loop)."""
    return run_async(_ttft(label, url, body, headers, concurrency, seconds))


@dataclass
class OpenStreamsResult:
    requested: int
    completed: int  # read to [DONE]
    peak_open: int  # response started (200 + headers) and not yet ended, at the same time
    peak_in_flight: int  # sent and not yet ended
    all_open_after_s: float | None  # when every stream had started, if they all did
    ttft_p50_ms: float
    ttft_p99_ms: float
    total_p99_ms: float
    duration_s: float
    errors: dict[str, int]

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def as_dict(self) -> dict:
        return asdict(self)


async def _open_streams(
    url: str, body: bytes, headers: dict[str, str], count: int, timeout_s: float
) -> OpenStreamsResult:
    errors: Counter = Counter()
    ttfts: list[float] = []
    totals: list[float] = []
    state = {"open": 0, "peak_open": 0, "in_flight": 0, "peak_in_flight": 0, "started": 0}
    all_open_at: list[float] = []
    began = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one() -> None:
            state["in_flight"] += 1
            state["peak_in_flight"] = max(state["peak_in_flight"], state["in_flight"])
            started = time.perf_counter()
            opened = False
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    if response.status != 200:
                        await response.read()
                        errors[f"http {response.status}"] += 1
                        return
                    opened = True
                    state["open"] += 1
                    state["peak_open"] = max(state["peak_open"], state["open"])
                    state["started"] += 1
                    if state["started"] == count:
                        all_open_at.append(time.perf_counter() - began)
                    first = None
                    finished = False
                    async for line in response.content:
                        if first is None and line.startswith(b"data:"):
                            first = time.perf_counter() - started
                        if line.startswith(b"data: [DONE]"):
                            finished = True
                    if first is not None:
                        ttfts.append(first * 1000)
                    if not finished:
                        errors["stream ended without [DONE]"] += 1
                        return
                    totals.append((time.perf_counter() - started) * 1000)
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors[type(exc).__name__] += 1
            finally:
                state["in_flight"] -= 1
                if opened:
                    state["open"] -= 1

        await asyncio.gather(*(one() for _ in range(count)))
    return OpenStreamsResult(
        requested=count,
        completed=len(totals),
        peak_open=state["peak_open"],
        peak_in_flight=state["peak_in_flight"],
        all_open_after_s=round(all_open_at[0], 3) if all_open_at else None,
        ttft_p50_ms=round(percentile(ttfts, 50), 1),
        ttft_p99_ms=round(percentile(ttfts, 99), 1),
        total_p99_ms=round(percentile(totals, 99), 1),
        duration_s=round(time.perf_counter() - began, 3),
        errors=dict(errors),
    )


def open_streams(
    url: str, body: bytes, headers: dict[str, str], count: int, timeout_s: float = 60
) -> OpenStreamsResult:
    """`count` streamed completions started at once and read to their end."""
    return run_async(_open_streams(url, body, headers, count, timeout_s))
