"""Router speed: mean and p99 µs per routing decision over a 500-model catalog.

Run on demand (not part of the suite; the suite only has a correctness smoke test):

    uv run python -m tests.load.bench_router [requests]

Target (SPEC/STYLE §4): ≤ 100 µs per decision with 500 models across 20 providers.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from decimal import Decimal

from routing.router import ModelOption, Policy, RouteRequest, RoutingTable, build_table, route

KINDS = (
    "openai", "anthropic", "groq", "openrouter", "together", "fireworks", "mistral",
    "deepseek", "gemini", "ollama", "vllm", "lmstudio", "azure_openai", "custom",
)  # fmt: skip

# SPEC §2 defaults.
POLICIES = (
    Policy("eco", 0.001, 0.7, 0.2, 0.1, preferred_kinds=frozenset({"ollama", "groq"})),
    Policy(
        "balanced",
        0.01,
        0.4,
        0.4,
        0.2,
        preferred_kinds=frozenset({"openrouter", "together", "fireworks"}),
    ),
    Policy("precision", 0.10, 0.1, 0.3, 0.6, preferred_kinds=frozenset({"openai", "anthropic"})),
)
LEVELS = tuple(p.level for p in POLICIES)


def catalog(n_models: int = 500, n_providers: int = 20, seed: int = 7) -> list[ModelOption]:
    """A catalog of `n_models` spread over `n_providers`; some names repeat across providers."""
    rng = random.Random(seed)
    options = []
    for i in range(n_models):
        provider = i % n_providers
        name = f"model-{rng.randrange(n_models // 2)}"
        input_price = Decimal(rng.choice((0, 5, 15, 50, 150, 300, 1000, 3000, 10000))) / 100
        options.append(
            ModelOption(
                id=i + 1,
                name=name,
                model_id=f"{KINDS[provider % len(KINDS)]}/{name}",
                provider_id=provider + 1,
                provider_kind=KINDS[provider % len(KINDS)],
                mode="embedding" if rng.random() < 0.1 else "chat",
                input_price=input_price,
                output_price=input_price * rng.choice((1, 2, 4)),
                context_window=rng.choice((4096, 8192, 32768, 128_000, 200_000)),
                max_output_tokens=rng.choice((1024, 4096, 8192, 16384)),
                supports_tools=rng.random() < 0.6,
                supports_vision=rng.random() < 0.3,
                supports_json=rng.random() < 0.7,
                quality=round(rng.random(), 2),
                latency_ms=None if rng.random() < 0.2 else float(rng.randrange(50, 5000)),
            )
        )
    return options


def requests(
    options: list[ModelOption], n: int = 1000, n_providers: int = 20, seed: int = 11
) -> list[RouteRequest]:
    """A mix of alias and explicit requests from callers with different keys and health."""
    rng = random.Random(seed)
    names = sorted({o.name for o in options})
    providers = list(range(1, n_providers + 1))
    out = []
    for _ in range(n):
        keyed = frozenset(rng.sample(providers, rng.randrange(n_providers // 2, n_providers + 1)))
        model = rng.choice(("auto", "auto", "eco", "balanced", "precision", rng.choice(names)))
        out.append(
            RouteRequest(
                model=model,
                level=rng.choice(LEVELS),
                keyed_providers=keyed,
                prompt_tokens=rng.choice((10, 500, 3000, 20_000)),
                max_output_tokens=rng.choice((0, 256, 1024, 8000)),
                mode="embedding" if rng.random() < 0.05 else "chat",
                needs_tools=rng.random() < 0.3,
                needs_vision=rng.random() < 0.1,
                needs_json=rng.random() < 0.2,
                auto_failover=rng.random() < 0.8,
                cooling=frozenset(rng.sample(providers, rng.randrange(3))),
                probing=frozenset(rng.sample(providers, rng.randrange(2))),
                error_rates={p: rng.random() / 2 for p in rng.sample(providers, 3)},
                preferred_providers=frozenset(rng.sample(providers, rng.randrange(2))),
                preferred_models=frozenset(rng.sample(names, rng.randrange(2))),
            )
        )
    return out


def measure(table: RoutingTable, reqs: list[RouteRequest]) -> list[int]:
    """Nanoseconds per `route` call, one sample per request."""
    samples = []
    for request in reqs:
        start = time.perf_counter_ns()
        route(request, table)
        samples.append(time.perf_counter_ns() - start)
    return samples


def main(n_requests: int = 1000) -> None:
    options = catalog()
    table = build_table(options, POLICIES)
    reqs = requests(options, n_requests)
    measure(table, reqs[:100])  # warm-up
    samples = sorted(measure(table, reqs))
    mean_us = statistics.fmean(samples) / 1000
    p50_us = samples[len(samples) // 2] / 1000
    p99_us = samples[min(len(samples) - 1, int(len(samples) * 0.99))] / 1000
    print(  # noqa: T201
        f"route(): {len(options)} models, {len(reqs)} decisions: "
        f"mean {mean_us:.1f} µs, p50 {p50_us:.1f} µs, p99 {p99_us:.1f} µs"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
