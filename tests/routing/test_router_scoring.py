"""The score (SPEC §2), pinned to numbers worked out by hand.

score = w_cost·(1 - cost/max_cost) + w_latency·(1 - latency/max_latency) + w_quality·quality
        (+ PREFERRED_KIND_BONUS for the level's preferred provider kinds)
final = score · (1 - 0.5·recent_error_rate)
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from routing.router import (
    PREFERRED_KIND_BONUS,
    UNKNOWN_LATENCY_MS,
    ModelOption,
    Policy,
    RouteRequest,
    build_table,
    route,
    static_score,
)

ECO = Policy("eco", 0.001, 0.7, 0.2, 0.1, preferred_kinds=frozenset({"ollama", "groq"}))
BALANCED = Policy(
    "balanced",
    0.01,
    0.4,
    0.4,
    0.2,
    preferred_kinds=frozenset({"openrouter", "together", "fireworks"}),
)
PRECISION = Policy(
    "precision", 0.10, 0.1, 0.3, 0.6, preferred_kinds=frozenset({"openai", "anthropic"})
)
POLICIES = (ECO, BALANCED, PRECISION)


def option(id_=1, *, price=("0", "0"), kind="custom", provider=1, **kw) -> ModelOption:
    return ModelOption(
        id=id_,
        name=kw.pop("name", f"m{id_}"),
        model_id=kw.pop("model_id", f"m{id_}"),
        provider_id=provider,
        provider_kind=kind,
        input_price=Decimal(price[0]),
        output_price=Decimal(price[1]),
        **kw,
    )


@pytest.mark.parametrize(
    ("policy", "model", "expected"),
    [
        # 0.002/1K of 0.01: .4·.8 = .32; 500 of 10 000 ms: .4·.95 = .38; .2·.8 = .16
        (BALANCED, {"price": ("1", "3"), "latency_ms": 500.0, "quality": 0.8}, 0.86),
        # the same, of a preferred kind: + 0.1
        (
            BALANCED,
            {"price": ("1", "3"), "latency_ms": 500.0, "quality": 0.8, "kind": "together"},
            0.96,
        ),
        # unknown latency counts as 1000 ms: .4·.9 = .36
        (BALANCED, {"price": ("1", "3"), "quality": 0.8}, 0.84),
        # slower than max_latency: the latency term is 0, not negative
        (BALANCED, {"price": ("1", "3"), "latency_ms": 20_000.0, "quality": 0.8}, 0.48),
        # above the cap (an explicit request): the cost term is 0, not negative
        (BALANCED, {"price": ("50", "150"), "latency_ms": 500.0, "quality": 0.8}, 0.54),
        # free, groq at eco: .7·1 + .2·.98 + .1·.3 + .1
        (
            ECO,
            {"price": ("0", "0"), "latency_ms": 200.0, "quality": 0.3, "kind": "groq"},
            1.026,
        ),
        # 0.05/1K of 0.10: .1·.5 + .3·.8 + .6·.9 + .1 (anthropic preferred)
        (
            PRECISION,
            {"price": ("25", "75"), "latency_ms": 2000.0, "quality": 0.9, "kind": "anthropic"},
            0.93,
        ),
        # all zero terms but quality
        (PRECISION, {"price": ("100", "100"), "latency_ms": 10_000.0, "quality": 0.5}, 0.3),
    ],
)
def test_static_score_is_the_specs_weighted_sum(policy, model, expected):
    assert static_score(option(**model), policy) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("policy", POLICIES)
def test_an_unknown_latency_scores_as_unknown_latency_ms(policy):
    unknown = option(latency_ms=None, price=("0.1", "0.2"), quality=0.4)
    assumed = option(latency_ms=UNKNOWN_LATENCY_MS, price=("0.1", "0.2"), quality=0.4)
    assert static_score(unknown, policy) == static_score(assumed, policy)


@pytest.mark.parametrize(
    ("policy", "kind"),
    [(ECO, "ollama"), (ECO, "groq"), (BALANCED, "openrouter"), (PRECISION, "openai")],
)
def test_a_preferred_provider_kind_of_the_level_gets_the_bonus(policy, kind):
    plain = static_score(option(kind="custom", price=("0.1", "0.2")), policy)
    preferred = static_score(option(kind=kind, price=("0.1", "0.2")), policy)
    assert preferred - plain == pytest.approx(PREFERRED_KIND_BONUS, abs=1e-12)


@pytest.mark.parametrize(("policy", "kind"), [(ECO, "openai"), (PRECISION, "groq")])
def test_another_levels_preferred_kind_gets_no_bonus(policy, kind):
    plain = static_score(option(kind="custom"), policy)
    assert static_score(option(kind=kind), policy) == plain


# A: .86 at balanced (see above); B: free .4 + unknown latency .36 + .2·.1 = .78.
A = option(1, provider=1, price=("1", "3"), latency_ms=500.0, quality=0.8)
B = option(2, provider=2, quality=0.1)


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        (None, [1, 2]),
        (0.0, [1, 2]),
        (0.1, [1, 2]),  # .86 · .95 = .817
        (0.18, [1, 2]),  # .86 · .91 = .7826
        (0.2, [2, 1]),  # .86 · .9 = .774
        (1.0, [2, 1]),  # .86 · .5 = .43
    ],
)
def test_the_final_score_is_the_score_times_one_minus_half_the_error_rate(rate, expected):
    assert static_score(A, BALANCED) == pytest.approx(0.86)
    assert static_score(B, BALANCED) == pytest.approx(0.78)
    rates = {} if rate is None else {1: rate}
    req = RouteRequest("balanced", "balanced", frozenset({1, 2}), error_rates=rates)
    assert [o.id for o in route(req, build_table([A, B], POLICIES))] == expected


def test_a_free_model_under_a_free_only_cap_gets_the_full_cost_term():
    # Staff may set a level's cap to 0 ("free tiers only"): that must not divide by zero.
    free_only = Policy("eco", 0.0, 0.7, 0.2, 0.1)
    free = option(1, latency_ms=200.0, quality=0.3)
    paid = option(2, price=("0.01", "0.01"))
    assert static_score(free, free_only) == pytest.approx(0.7 + 0.2 * 0.98 + 0.1 * 0.3)
    assert static_score(paid, free_only) == pytest.approx(0.2 * 0.9 + 0.1 * 0.5)
    table = build_table([free, paid], [free_only])
    assert route(RouteRequest("eco", "eco", frozenset({1})), table) == [free]


def test_a_zero_max_latency_gives_every_known_latency_a_zero_latency_term():
    instant = Policy("balanced", 0.01, 0.4, 0.4, 0.2, max_latency_ms=0.0)
    model = option(1, latency_ms=300.0, quality=0.5)
    assert static_score(model, instant) == pytest.approx(0.4 + 0.0 + 0.1)
    assert static_score(option(1, quality=0.5), instant) == pytest.approx(0.5)
    table = build_table([model], [instant])
    assert route(RouteRequest("auto", "balanced", frozenset({1})), table) == [model]


def test_build_table_keeps_each_levels_models_under_its_cap_best_first():
    models = [
        option(1, price=("0.10", "0.40"), quality=0.3),  # .00025/1K
        option(2, price=("2.50", "10"), quality=0.6),  # .00625/1K
        option(3, price=("30", "60"), quality=0.9),  # .045/1K
        option(4, price=("150", "600"), quality=1.0),  # .375/1K: no level
        option(5, price=("0.10", "0.40"), quality=0.3),  # ties 1 everywhere: after it
    ]
    table = build_table(models, POLICIES)
    assert {level: [o.id for _, o in rows] for level, rows in table.by_level.items()} == {
        "eco": [1, 5],
        "balanced": [1, 5, 2],
        "precision": [3, 2, 1, 5],
    }
    for level, rows in table.by_level.items():
        policy = table.policies[level]
        assert [s for s, _ in rows] == [static_score(o, policy) for _, o in rows]


def test_build_table_indexes_models_by_catalog_name_and_by_model_id():
    models = [
        option(1, name="gpt-4o", model_id="gpt-4o", provider=1),
        option(2, name="gpt-4o", model_id="gpt-4o-2024-08-06", provider=2),
        option(3, name="anthropic/claude-3-5-haiku", model_id="claude-3-5-haiku-latest"),
    ]
    table = build_table(models, POLICIES)
    assert {name: [o.id for o in opts] for name, opts in table.by_name.items()} == {
        "gpt-4o": [1, 2],
        "gpt-4o-2024-08-06": [2],
        "anthropic/claude-3-5-haiku": [3],
        "claude-3-5-haiku-latest": [3],
    }
