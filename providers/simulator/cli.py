"""Command line (``python -m providers.simulator``), shared with ``manage.py run_simulator``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Sequence

from config import gc_tuning
from providers.simulator.server import Simulator, SimulatorConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m providers.simulator",
        description="Fake OpenAI/Anthropic-compatible LLM upstream for tests and benchmarks.",
    )
    add_arguments(parser)
    parser.add_argument(
        "--no-uvloop", action="store_true", help="use the stdlib event loop even if uvloop exists"
    )
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared with the run_simulator management command."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100, help="0 picks a free port")
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="delay before every answer's headers"
    )
    parser.add_argument(
        "--tokens-per-second", type=float, default=0.0, help="stream pacing; 0 = unlimited"
    )
    parser.add_argument(
        "--models", default="", help="comma-separated model ids added to the model list"
    )
    parser.add_argument(
        "--output-tokens", type=int, default=20, help="answer length before max_tokens caps it"
    )


def config_from(options: argparse.Namespace) -> SimulatorConfig:
    return SimulatorConfig(
        latency_ms=options.latency_ms,
        tokens_per_second=options.tokens_per_second,
        models=tuple(m.strip() for m in options.models.split(",") if m.strip()),
        output_tokens=options.output_tokens,
    )


def announce(url: str) -> None:
    # Parsed by scripts that start the simulator on port 0; keep the format stable.
    sys.stderr.write(f"switchyard simulator listening on {url}\n")
    sys.stderr.flush()


async def serve(
    config: SimulatorConfig, host: str, port: int, on_ready: Callable[[str], None] = announce
) -> None:
    """Serve until SIGINT/SIGTERM."""
    simulator = await Simulator(config).start(host, port)
    # Tuned like a gateway worker: as an upstream the simulator should answer in the time it
    # was told to, not add its own collector pauses to what a benchmark measures.
    gc_tuning.tune(gc_tuning.DEFAULT_THRESHOLDS, freeze=True)
    on_ready(simulator.url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await simulator.stop()


def run(
    config: SimulatorConfig,
    host: str,
    port: int,
    *,
    use_uvloop: bool = True,
    on_ready: Callable[[str], None] = announce,
) -> None:
    runner = asyncio.run
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            runner = uvloop.run
    runner(serve(config, host, port, on_ready))


def main(argv: Sequence[str] | None = None) -> None:
    options = build_parser().parse_args(argv)
    run(config_from(options), options.host, options.port, use_uvloop=not options.no_uvloop)
