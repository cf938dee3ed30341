"""What the gateway's metrics cost a request: µs of CPU per request, both metric modes.

Run on demand (not part of the suite):

    uv run python -m tests.load.bench_metrics

One "request" is what the hot path does: the `measured` wrapper around a handler whose one
attempt is accounted by `attempt_recorded` (tokens of three types, cost, and for a stream a
time to first token), minus the same handler without metrics. Budget: 10-15 µs.
Multiprocess mode (PROMETHEUS_MULTIPROC_DIR, how config/serve.py runs the web) writes each
increment to an mmap'd file, so it is measured in a child process started with the variable.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import timeit
from decimal import Decimal
from types import SimpleNamespace

ROUNDS = 20_000
# CPU time, not wall time: on a busy machine the wall clock also counts other processes.
CPU = time.process_time


def _measure() -> dict[str, float]:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("SECRET_KEY", "bench")
    os.environ.setdefault("SWITCHYARD_DEV_KEY", "true")
    django.setup()

    from providers.adapters.base import Usage
    from routing.gateway import metrics
    from usage.choices import Outcome

    state = SimpleNamespace(snapshot=SimpleNamespace(providers={7: SimpleNamespace(slug="openai")}))
    call = SimpleNamespace(power_level=2)
    option = SimpleNamespace(provider_id=7, name="gpt-4o-mini")
    usage = Usage(input_tokens=812, cached_tokens=128, output_tokens=240)
    cost = Decimal("0.000731")

    async def bare(state_, scope, receive, send) -> None:
        return None

    async def json_request(state_, scope, receive, send) -> None:
        metrics.attempt_recorded(state, call, option, Outcome.SUCCESS, 200, usage, cost, None)

    async def stream_request(state_, scope, receive, send) -> None:
        metrics.attempt_recorded(state, call, option, Outcome.SUCCESS, 200, usage, cost, 1e9)

    def drive(handler) -> None:
        # A coroutine that never awaits runs to completion on its first send().
        with contextlib.suppress(StopIteration):
            handler(state, {}, None, None).send(None)

    measured_json = metrics.measured(json_request)
    measured_stream = metrics.measured(stream_request)
    for handler in (bare, measured_json, measured_stream):
        drive(handler)  # children created outside the timing

    def best(handler) -> float:
        runs = timeit.repeat(lambda: drive(handler), number=ROUNDS, repeat=7, timer=CPU)
        return min(runs) / ROUNDS * 1e6

    baseline = best(bare)
    return {
        "json": best(measured_json) - baseline,
        "stream": best(measured_stream) - baseline,
        "labels_call": min(
            timeit.repeat(
                lambda: metrics.REQUESTS.labels("openai", "gpt-4o-mini", "balanced", "success"),
                number=ROUNDS,
                repeat=7,
                timer=CPU,
            )
        )
        / ROUNDS
        * 1e6,
    }


def main() -> None:
    if os.environ.get("BENCH_METRICS_CHILD"):
        result = _measure()
        print(" ".join(f"{k}={v:.2f}" for k, v in result.items()))  # noqa: T201
        return
    rows = []
    for mode in ("single process", "multiprocess"):
        env = {**os.environ, "BENCH_METRICS_CHILD": "1"}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        with tempfile.TemporaryDirectory() as directory:
            if mode == "multiprocess":
                env["PROMETHEUS_MULTIPROC_DIR"] = directory
            out = subprocess.run(
                [sys.executable, "-m", "tests.load.bench_metrics"],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        values = dict(item.split("=") for item in out.split())
        rows.append((mode, values))
    print("| mode | JSON request | stream request | one .labels() call |")  # noqa: T201
    print("|---|---|---|---|")  # noqa: T201
    for mode, values in rows:
        print(  # noqa: T201
            f"| {mode} | {values['json']} µs | {values['stream']} µs | {values['labels_call']} µs |"
        )


if __name__ == "__main__":
    main()
