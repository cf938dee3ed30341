"""The benchmark's workload, checked for correctness only: 500 models, 20 providers, 1,000
decisions. No timing here (the suite never asserts on wall time); measure with
`uv run python -m tests.load.bench_router`.
"""

from __future__ import annotations

from collections import Counter

from routing.router import RouteRequest, build_table, level_for, route
from tests.load.bench_router import POLICIES, catalog, requests


def _serves(o, r: RouteRequest) -> bool:
    return (
        o.provider_id in r.keyed_providers
        and o.provider_id not in r.cooling
        and o.mode == r.mode
        and o.context_window >= r.prompt_tokens + r.max_output_tokens
        and (o.mode != "chat" or o.max_output_tokens >= r.max_output_tokens)
        and (o.supports_tools or not r.needs_tools)
        and (o.supports_vision or not r.needs_vision)
        and (o.supports_json or not r.needs_json)
    )


def test_a_thousand_decisions_over_five_hundred_models_are_all_sound():
    options = catalog(n_models=500, n_providers=20)
    assert len({o.provider_id for o in options}) == 20
    table = build_table(options, POLICIES)
    reqs = requests(options, n=1000, n_providers=20)
    outcomes = Counter()
    for r in reqs:
        level = level_for(r.model, r.level)
        chain = route(r, table)  # the workload names catalog models only: no UnknownModel
        assert len({o.id for o in chain}) == len(chain)
        assert all(_serves(o, r) for o in chain)
        if not r.auto_failover:
            assert len(chain) <= 1
        if level is not None:
            cap = table.policies[level].max_price_per_1k
            assert all(o.price_per_1k <= cap for o in chain)
            fitting = [o for o in options if o.price_per_1k <= cap and _serves(o, r)]
            assert len(chain) == (len(fitting) if r.auto_failover else min(1, len(fitting)))
        else:
            named = {o.id for o in options if r.model in (o.name, o.model_id) and _serves(o, r)}
            if r.auto_failover:
                assert {o.id for o in chain[: len(named)]} == named
                cap = table.policies[r.level].max_price_per_1k
                assert all(o.price_per_1k <= cap for o in chain[len(named) :])
            else:
                assert len(chain) == min(1, len(named))
                assert all(o.id in named for o in chain)
        outcomes["empty" if not chain else "alias" if level else "explicit"] += 1
    # The workload exercises every path.
    assert outcomes["alias"] > 100
    assert outcomes["explicit"] > 50
    assert outcomes["empty"] > 0
