"""Switchyard's fake LLM upstream: OpenAI- and Anthropic-compatible, deterministic.

Tests use it as ground truth (its request log records keys, token counts and outcomes),
benchmarks as a zero-cost upstream. No Django imports here: it starts fast and runs
standalone (``python -m providers.simulator --host 127.0.0.1 --port 9100``).

Endpoints (any path prefix works, see server.py): ``POST /v1/chat/completions``,
``POST /v1/embeddings``, ``GET /v1/models[/<id>]`` (Anthropic's shape when the request
has ``anthropic-version``), ``POST /v1/messages``, ``POST /v1/messages/count_tokens``,
Azure's ``/openai/deployments/<name>/...``. Every one needs a key (``Authorization:
Bearer``, ``x-api-key`` or ``api-key``); a key starting with ``sim-bad`` gets 401.

Per-request headers:
    x-sim-fault: <spec>              a fault, syntax in faults.py
    x-sim-latency-ms: N              delay before the status line
    x-sim-tokens-per-second: N       stream pacing
    x-sim-output-tokens: N           answer length before max_tokens (default 20)
    x-sim-cached-tokens: N           reported as cached prompt tokens
    x-sim-cache-creation-tokens: N   Anthropic cache_creation_input_tokens
Base-URL prefixes ``/fault/<spec>``, ``/latency/<ms>``, ``/tps/<n>`` do the same for
every request sent through that URL. Token counting: tokens.py; answers: reply.py.

Python API: ``Simulator`` (asyncio: ``await start(host, port=0)``, ``url``, ``port``,
``log``, ``clear_log()``, ``script(faults)``, ``clear_script()``, ``await stop()``) and
``SimulatorThread`` (the same from synchronous code, on a background loop).
"""

from __future__ import annotations

from providers.simulator.faults import FaultError
from providers.simulator.server import DEFAULT_MODELS, Simulator, SimulatorConfig
from providers.simulator.thread import SimulatorThread

__all__ = ["DEFAULT_MODELS", "FaultError", "Simulator", "SimulatorConfig", "SimulatorThread"]
