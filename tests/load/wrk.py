"""wrk, closed loop: a fixed number of connections POSTing the small chat body back to back.

wrk's Lua `done()` hook prints one JSON line with the exact percentiles (µs) and error
counts, so nothing depends on parsing wrk's human-readable output. `--latency` is passed
too, so the log of a run still shows wrk's own distribution.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

MARK = "WRK_JSON "

SCRIPT = """
wrk.method = "POST"
wrk.body = [[{body}]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{mark}{{"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d,' ..
    '"max":%d,"mean":%.1f}}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean))
end
"""


@dataclass
class WrkResult:
    label: str
    connections: int
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    non_2xx: int  # wrk's "Non-2xx or 3xx responses"
    socket_errors: int  # connect + read + write + timeout
    server_cpu_us: float | None = None  # CPU of the measured server per request
    foreign_cpu_pct: float | None = None  # other work on the machine meanwhile (% of all CPUs)

    @property
    def failed(self) -> int:
        return self.non_2xx + self.socket_errors

    def as_dict(self) -> dict:
        return asdict(self)


def available() -> bool:
    return shutil.which("wrk") is not None


def write_script(path: Path, body: bytes, api_key: str) -> Path:
    path.write_text(SCRIPT.format(body=body.decode(), key=api_key, mark=MARK))
    return path


def run(
    label: str,
    url: str,
    script: Path,
    *,
    connections: int,
    seconds: float,
    log: Path | None = None,
    threads: int = 1,
) -> WrkResult:
    """One wrk run; `threads` stays 1 by default so wrk uses at most one of the two cores."""
    argv = [
        "wrk",
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    done = subprocess.run(  # noqa: S603
        argv, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    if log is not None:
        with open(log, "a") as out:
            out.write(f"$ {' '.join(argv)}\n{done.stdout}{done.stderr}\n")
    line = next((x for x in done.stdout.splitlines() if x.startswith(MARK)), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    raw = json.loads(line[len(MARK) :])
    duration = raw["duration_us"] / 1e6
    return WrkResult(
        label=label,
        connections=connections,
        requests=raw["requests"],
        duration_s=round(duration, 3),
        rps=raw["requests"] / duration if duration else 0.0,
        p50_ms=raw["p50"] / 1000,
        p90_ms=raw["p90"] / 1000,
        p99_ms=raw["p99"] / 1000,
        p999_ms=raw["p999"] / 1000,
        max_ms=raw["max"] / 1000,
        non_2xx=raw["status"],
        socket_errors=raw["connect"] + raw["read"] + raw["write"] + raw["timeout"],
    )
