"""py-spy on the gateway worker while wrk loads it: collapsed stacks and a top-N summary.

py-spy is not a project dependency: `uv pip install py-spy` into the venv for a session.
Samples are taken at 100 Hz with --nonblocking (the worker is never paused) and --gil: only
the thread holding the GIL is sampled, so the shares are of the Python CPU time that bounds
one worker's throughput (the usage writer's thread competes for it with the event loop).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    if beside.exists():
        return str(beside)
    return shutil.which("py-spy")


def start(pid: int, seconds: float, out: Path, rate: int = 100) -> subprocess.Popen:
    exe = py_spy()
    if exe is None:
        raise RuntimeError("py-spy is not installed (uv pip install py-spy)")
    return subprocess.Popen(  # noqa: S603
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(seconds))),
            "--rate",
            str(rate),
            "--nonblocking",
            "--gil",
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@dataclass
class Summary:
    samples: int
    self_top: list[tuple[str, float]]  # (frame, % of samples where it is the leaf)
    total_top: list[tuple[str, float]]  # (frame, % of samples where it is on the stack)
    groups: list[tuple[str, float]]  # (bucket, % of samples), see GROUPS


SCHEDULING = "asyncio / uvloop scheduling"
# Buckets by the file a sample's leaf-most "interesting" frame is in, first match wins.
GROUPS = (
    ("limiter: fakeredis + Lua in process", ("fakeredis/", "lupa")),
    ("limiter: redis-py (Redis round trips)", ("redis/", "hiredis")),
    ("uvicorn / httptools (HTTP server)", ("uvicorn/", "httptools")),
    ("aiohttp client (upstream call)", ("aiohttp/", "multidict", "yarl/")),
    (SCHEDULING, ("asyncio/", "uvloop")),
    ("gateway code (routing/gateway, providers/adapters)", ("routing/", "providers/")),
    ("usage writer (Django ORM, sqlite/psycopg)", ("django/", "sqlite3", "psycopg", "usage/")),
    ("logging", ("logging/",)),
)


# Frames every sample of the event loop has: they say nothing about where time goes.
WRAPPERS = (
    "<frozen runpy>",
    "click/",
    "uvicorn/main.py",
    "uvicorn/server.py",
    "uvicorn/__main__.py",
    "asyncio/runners.py",
    "asyncio/base_events.py",
    "asyncio/events.py",
    "threading.py",
    "concurrent/futures/thread.py",
)


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)".
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path, _, _line = where.rpartition(":")
    for marker in ("site-packages/", "/lib/python3.12/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})" if path else name


def _bucket(frames: list[str]) -> str:
    """The innermost frame's library; asyncio only when nothing more specific called it (a
    socket write under redis-py counts for redis-py, not for asyncio's StreamWriter)."""
    fallback = "other"
    for frame in reversed(frames):
        hit = next((g for g, needles in GROUPS if any(x in frame for x in needles)), None)
        if hit == SCHEDULING:
            fallback = SCHEDULING
        elif hit:
            return hit
    return fallback


def summarize(raw: Path, top: int = 15) -> Summary:
    self_counts: Counter = Counter()
    total_counts: Counter = Counter()
    group_counts: Counter = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_frame_name(f) for f in stack.split(";") if f]
        # The first element is the thread ("process 123:"...), drop non-code frames.
        frames = [f for f in frames if "(" in f]
        if not frames:
            continue
        samples += n
        self_counts[frames[-1]] += n
        for name in set(frames):
            if not any(w in name for w in WRAPPERS):
                total_counts[name] += n
        group_counts[_bucket(frames)] += n

    def pct(counter: Counter) -> list[tuple[str, float]]:
        return [(k, 100.0 * v / samples) for k, v in counter.most_common(top)] if samples else []

    return Summary(samples, pct(self_counts), pct(total_counts), pct(group_counts))
