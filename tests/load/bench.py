"""Gateway vs direct-to-simulator: `DEBUG=false uv run python -m tests.load.bench` (`make bench`).

Sets up its own world (a fresh SQLite database in a temp dir, or PostgreSQL + Redis with
`--services`), starts the upstream simulator and ONE gateway worker (uvicorn, uvloop,
httptools), measures with wrk and aiohttp clients, prints a Markdown table and writes it to
var/bench-results.md (or `--out`). Everything runs on 127.0.0.1, bounded in time; all child
processes are stopped at the end.

    --quick          the CI form: a few seconds per point, c=1 and c=16, one streaming point
    --duration S     seconds per measured point (default 8, quick 2)
    --held           + 500 requests/s open-loop for 60 s against a 1.5 s upstream
    --streams N      + N streaming requests held open at once against a slow upstream
    --services       PostgreSQL (sy_bench, created and dropped) and Redis (db 12)
    --litellm VENV   + a LiteLLM proxy from that venv against the same simulator
    --profile        + py-spy record of the gateway at c=16 (needs `uv pip install py-spy`)
    --wait-quiet S   wait up to S seconds for an idle machine first (other work skews numbers)

Targets are reported against the measurements, never asserted: the exit status is 1 only
when a request of the closed-loop points failed (then the numbers mean nothing).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import signal
import sys
import time
from collections import Counter
from pathlib import Path

from config import gc_tuning
from tests.load import openloop, profile, streaming, wrk
from tests.load.harness import (
    CHAT_BODY,
    ROOT,
    STREAM_BODY,
    BenchError,
    CpuMeter,
    Env,
    RSSSampler,
    cpu_busy,
    free_port,
    loadavg,
    rss_kb,
)
from tests.load.litellm import run_litellm
from tests.load.report import PACED, Results, render

SLOW_LATENCY_MS = 1500
PACED_TPS = 200  # the paced streaming point: 20 tokens over ~0.1 s
SLOW_TPS = 2  # the slow upstream streams 20 tokens over ~10 s after its 1.5 s wait
SOAK_TARGET = 20_000
# "2026-11-23 13:55:48,263 ERROR routing.gateway.limits limits.settle_failed" -> the event
ERROR_LINE = re.compile(r" (?:ERROR|CRITICAL) \S+ (\S+)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.load.bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="short CI form")
    parser.add_argument("--duration", type=float, default=None, help="seconds per point")
    parser.add_argument("--held", action="store_true", help="held-load scenario (60 s)")
    parser.add_argument("--held-rate", type=float, default=500.0)
    parser.add_argument("--held-seconds", type=float, default=60.0)
    parser.add_argument("--streams", type=int, default=0, help="concurrent open streams check")
    parser.add_argument("--services", action="store_true", help="PostgreSQL + Redis")
    parser.add_argument("--litellm", metavar="VENV", help="a venv with litellm[proxy]")
    parser.add_argument("--profile", action="store_true", help="py-spy the gateway at c=16")
    parser.add_argument("--out", type=Path, default=None, help="Markdown output path")
    parser.add_argument("--json", type=Path, default=None, help="raw results as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, db)")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="S",
        help="first wait up to S seconds for the machine to be idle (< 15 %% busy)",
    )
    options = parser.parse_args(argv)
    if options.duration is None:
        options.duration = 2.0 if options.quick else 8.0
    return options


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)  # noqa: T201


class Bench:
    def __init__(self, options: argparse.Namespace, env: Env, results: Results) -> None:
        self.o = options
        self.env = env
        self.results = results
        self.gateway_requests = 0  # served by the current gateway process
        self.wrk_log = env.tmp / "wrk.log"
        self.gateway = None
        self.sampler: RSSSampler | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.env.api_key}", "Content-Type": "application/json"}

    # -- phases ----------------------------------------------------------------------

    def run(self) -> None:
        o, env = self.o, self.env
        self.sim_port = free_port()
        self.sim, self.sim_url = env.start_simulator("simulator", port=self.sim_port)
        say(f"simulator on {self.sim_url}; migrate + seed_demo ({env.tmp})")
        took = env.setup_database(self.sim_url)
        say(f"database ready in {took:.1f} s")
        self.start_gateway()
        script = wrk.write_script(env.tmp / "chat.lua", CHAT_BODY, env.api_key)
        levels = (1, 16) if o.quick else (1, 16, 64)
        for c in levels:
            self.point("direct", f"{self.sim_url}/v1/chat/completions", script, c)
            self.point("gateway", f"{self.gw_url}/v1/chat/completions", script, c)
        for c in (16,) if o.quick else (1, 16):
            self.stream_point("direct", f"{self.sim_url}/v1/chat/completions", c)
            self.stream_point("gateway", f"{self.gw_url}/v1/chat/completions", c)
            self.mark_rss(f"streaming c={c}")
        self.paced_streams()
        if not o.quick:
            self.soak(script)
        if o.profile:
            self.profile(script)
        if o.litellm:
            self.results.litellm = run_litellm(
                Path(o.litellm), env, self.sim_url, script, self.results, o.duration, self.wrk_log
            )
        self.stop_gateway()
        if o.held or o.streams:
            self.slow_phases()

    def start_gateway(self) -> None:
        """A cold start (empty bytecode cache), then, outside --quick, a warm restart."""
        env = self.env
        port = free_port()
        proc, url, start = env.start_gateway("gateway", port=port, cold=True)
        self.record_startup(start)
        if not self.o.quick:
            env.stop(proc)
            proc, url, start = env.start_gateway("gateway-warm", port=port)
            self.record_startup(start)
        self.gateway, self.gw_url = proc, url
        self.gateway_requests = 1
        self.sampler = RSSSampler(proc.pid)
        self.sampler.start()
        self.mark_rss("start")

    def record_startup(self, start) -> None:
        self.results.startups.append(
            {
                "cold": start.cold,
                "health_s": round(start.health_s, 3),
                "completion_s": round(start.completion_s, 3),
                "rss_mb": round((start.rss_kb or 0) / 1024, 1),
            }
        )
        kind = "cold" if start.cold else "warm"
        say(
            f"gateway up ({kind}): /healthz {start.health_s:.2f} s, "
            f"completion {start.completion_s:.2f} s"
        )

    def stop_gateway(self) -> None:
        if self.sampler:
            self.sampler.stop()
            self.sampler = None
        if self.gateway:
            self.env.stop(self.gateway)
            self.log_errors(self.gateway)
            self.gateway = None

    def log_errors(self, proc) -> None:
        """What the gateway logged at ERROR level while it was measured, counted by event."""
        counts: Counter = Counter()
        with contextlib.suppress(OSError):
            for line in proc.log.read_text(errors="replace").splitlines():
                match = ERROR_LINE.search(line)
                if match:
                    counts[match.group(1)] += 1
        if counts:
            listed = ", ".join(f"{event} x{n:,}" for event, n in counts.most_common(6))
            self.results.notes.append(f"{proc.name} logged errors: {listed} (log: {proc.log})")
            self.results.log_errors[proc.name] = dict(counts)

    def mark_rss(self, after: str) -> None:
        value = rss_kb(self.gateway.pid) if self.gateway else None
        if value is not None:
            self.results.rss.append(
                {
                    "after": after,
                    "requests": self.gateway_requests,
                    "rss_mb": round(value / 1024, 1),
                }
            )

    def meter(self, path: str) -> CpuMeter:
        """CPU of the server measured (gateway or simulator) and of everything else."""
        gateway, sim = self.gateway.pid, self.sim.pid
        if path.endswith("gateway"):
            return CpuMeter(gateway, (sim,))
        return CpuMeter(sim, (gateway,))

    def point(self, path: str, url: str, script: Path, c: int) -> None:
        warmup = 0.5 if self.o.quick else 1.0
        label = f"{path} c={c}"
        log = self.wrk_log
        self.results.warmups.append(
            wrk.run(f"warm-up {label}", url, script, connections=c, seconds=warmup, log=log)
        )
        with self.meter(path) as cpu:
            result = wrk.run(label, url, script, connections=c, seconds=self.o.duration, log=log)
        result.server_cpu_us = round(1e6 * cpu.server_s / max(1, result.requests), 1)
        result.foreign_cpu_pct = round(cpu.foreign_pct, 1)
        self.results.wrk[(path, c)] = result
        if path == "gateway":
            self.gateway_requests += self.results.warmups[-1].requests + result.requests
            self.mark_rss(label)
        say(
            f"{label}: {result.rps:,.0f} rps, p50 {result.p50_ms:.2f} ms, "
            f"p99 {result.p99_ms:.2f} ms, failed {result.failed}, "
            f"{result.server_cpu_us:.0f} µs CPU/request, other load {result.foreign_cpu_pct:.0f} %"
        )

    def stream_point(self, path: str, url: str, c: int) -> None:
        label = f"{path} stream c={c}"
        streaming.ttft(f"warm-up {label}", url, STREAM_BODY, self.headers, c, 0.5)
        with self.meter(path) as cpu:
            result = streaming.ttft(label, url, STREAM_BODY, self.headers, c, self.o.duration)
        result.server_cpu_us = round(1e6 * cpu.server_s / max(1, result.streams), 1)
        result.foreign_cpu_pct = round(cpu.foreign_pct, 1)
        self.results.streams[(path, c)] = result
        if path.endswith("gateway"):
            self.gateway_requests += result.streams + result.failed
        say(
            f"{label}: {result.streams_per_s:,.0f} streams/s, TTFT p50 {result.ttft(50):.2f} ms, "
            f"p99 {result.ttft(99):.2f} ms, failed {result.failed}"
        )

    def paced_streams(self) -> None:
        """Streams at c=16 from an upstream that paces its tokens, as a model does: the
        worker relays sixteen open streams instead of queueing sixteen whole answers, so the
        TTFT measured is the relay's own. The unpaced simulator comes back afterwards."""
        env = self.env
        env.stop(self.sim)
        self.sim, _ = env.start_simulator("simulator-paced", port=self.sim_port, tps=PACED_TPS)
        self.results.meta["paced_upstream"] = f"its tokens at {PACED_TPS:g} tokens/s"
        try:
            chat = "/v1/chat/completions"
            self.stream_point(PACED + "direct", self.sim_url + chat, 16)
            self.stream_point(PACED + "gateway", self.gw_url + chat, 16)
        finally:
            env.stop(self.sim)
            self.sim, _ = env.start_simulator("simulator", port=self.sim_port)

    def soak(self, script: Path) -> None:
        """Keep loading at c=16 until well past SOAK_TARGET, sampling RSS after each chunk."""
        url = f"{self.gw_url}/v1/chat/completions"
        chunks = 0
        while chunks < 3 or self.gateway_requests < SOAK_TARGET + 10_000:
            if chunks >= 12:
                break
            r = wrk.run("soak", url, script, connections=16, seconds=5, log=self.wrk_log)
            self.results.warmups.append(r)
            self.gateway_requests += r.requests
            chunks += 1
            self.mark_rss("soak c=16")
        say(f"soak: {self.gateway_requests:,} gateway requests, RSS {self.results.rss[-1]}")

    def profile(self, script: Path) -> None:
        if profile.py_spy() is None:
            self.results.notes.append("--profile: py-spy is not installed; no profile taken.")
            return
        raw = self.env.tmp / "gateway-c16.pyspy.txt"
        seconds = max(4.0, self.o.duration)
        spy = profile.start(self.gateway.pid, seconds, raw)
        time.sleep(0.5)
        url = f"{self.gw_url}/v1/chat/completions"
        r = wrk.run("profile", url, script, connections=16, seconds=seconds, log=self.wrk_log)
        self.results.warmups.append(r)
        self.gateway_requests += r.requests
        _, err = spy.communicate(timeout=seconds + 30)
        if spy.returncode != 0 or not raw.exists():
            self.results.notes.append(f"py-spy failed: {err.decode(errors='replace')[-300:]}")
            return
        self.results.profile = profile.summarize(raw)
        keep = ROOT / "var" / "bench-profile-c16.txt"
        keep.parent.mkdir(exist_ok=True)
        keep.write_text(raw.read_text())
        self.results.notes.append(
            f"py-spy collapsed stacks (c=16, {r.rps:,.0f} rps while sampled): {keep}"
        )

    def slow_phases(self) -> None:
        """A 1.5 s upstream on the same address: a fresh simulator, then a fresh gateway."""
        env, o = self.env, self.o
        env.stop(self.sim)
        self.sim, _ = env.start_simulator(
            "simulator-slow", port=self.sim_port, latency_ms=SLOW_LATENCY_MS, tps=SLOW_TPS
        )
        self.results.meta["slow_upstream"] = (
            f"{SLOW_LATENCY_MS} ms before the headers, then {SLOW_TPS} tokens/s"
        )
        self.results.meta["held_latency_ms"] = SLOW_LATENCY_MS
        proc, url, _ = env.start_gateway("gateway-slow")
        self.gateway, self.gw_url = proc, url
        self.gateway_requests = 1
        self.sampler = RSSSampler(proc.pid)
        self.sampler.start()
        chat = f"{url}/v1/chat/completions"
        if o.held:
            start_kb = rss_kb(proc.pid) or 0
            say(f"held load: {o.held_rate:.0f} rps for {o.held_seconds:.0f} s")
            with self.meter("gateway") as cpu:
                held = openloop.run(
                    chat, CHAT_BODY, self.headers, rate=o.held_rate, seconds=o.held_seconds
                )
            self.results.held = held
            self.results.held_rss = {
                "start": start_kb / 1024,
                "peak": (self.sampler.peak() or 0) / 1024,
                "end": (rss_kb(proc.pid) or 0) / 1024,
                "cpu_us": 1e6 * cpu.server_s / max(1, held.sent),
                "cpu_pct": 100 * cpu.server_s / max(1e-9, held.duration_s),
                "foreign_pct": cpu.foreign_pct,
            }
            say(
                f"held: {held.served_pct:.2f} % served, p50 {held.p50_ms:.0f} ms, "
                f"p99 {held.p99_ms:.0f} ms, errors {held.errors}"
            )
        if o.streams:
            say(f"{o.streams} streams at once")
            result = streaming.open_streams(chat, STREAM_BODY, self.headers, o.streams)
            self.results.open_streams = result
            self.results.open_streams_rss_mb = round((self.sampler.peak() or 0) / 1024, 1)
            say(f"streams: {result.as_dict()}")
        self.stop_gateway()


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    # SIGTERM (a CI timeout, `kill PID`) unwinds like Ctrl-C: the finally below stops the
    # simulator and the gateway, which run in sessions of their own.
    signal.signal(signal.SIGTERM, _interrupt)
    # The aiohttp load generators run in this process: their collector pauses would be
    # measured as latency of whatever they load (gateway and direct alike).
    gc_tuning.tune(gc_tuning.DEFAULT_THRESHOLDS, freeze=True)
    if not wrk.available():
        say("wrk is not installed: apt-get install -y wrk")
        return 2
    env = Env.create(services=options.services, keep=options.keep)
    results = Results()
    results.meta = {
        "mode": "quick" if options.quick else "full",
        "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} CPUs, Python {platform.python_version()}",
        "database": "PostgreSQL + Redis" if options.services else "SQLite, no Redis",
        "seconds": options.duration,
        "warmup": 0.5 if options.quick else 1.0,
    }
    busy = cpu_busy()
    deadline = time.monotonic() + options.wait_quiet
    while busy > 0.15 and time.monotonic() < deadline:
        say(f"the machine is {busy:.0%} busy; waiting for it to be idle")
        time.sleep(4)
        busy = cpu_busy(2)
    results.meta["busy_before"] = round(busy * 100)
    results.meta["load_before"] = loadavg()
    if busy > 0.15:
        results.notes.append(
            f"The machine was {busy:.0%} busy before the bench started (load average "
            f"{results.meta['load_before']:.1f}): other work shares the cores, so every number "
            "here is lower than on a quiet machine; compare ratios within this run only."
        )
    began = time.monotonic()
    bench = Bench(options, env, results)
    failed: str | None = None
    try:
        bench.run()
    except KeyboardInterrupt:
        failed = "interrupted"
        results.notes.append("the bench was interrupted; the numbers above are partial")
    except (BenchError, RuntimeError, OSError) as exc:
        failed = str(exc)
        env.keep = True  # the logs say why
        results.notes.append(
            f"the bench stopped early: {failed.splitlines()[0][:200]} (logs: {env.tmp})"
        )
    finally:
        bench.stop_gateway()
        env.close()
    results.meta["total_s"] = round(time.monotonic() - began, 1)
    results.meta["load_after"] = loadavg()
    text = render(results)
    print(text)  # noqa: T201
    out = options.out or ROOT / "var" / "bench-results.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    say(f"table written to {out} ({results.meta['total_s']} s in all)")
    if options.json:
        options.json.write_text(json.dumps(results.as_dict(), indent=2, default=str))
    if failed:
        say(f"FAILED: {failed}")
        return 130 if failed == "interrupted" else 1
    if results.core_failures():
        say(f"{results.core_failures()} requests failed in the closed-loop points")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
