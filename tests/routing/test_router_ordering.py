"""The order of the fallback chain: score, then the caller's preferences and probing (SPEC §2)."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from routing.router import ModelOption, Policy, RouteRequest, build_table, route

BALANCED = Policy(
    "balanced", 0.01, 0.4, 0.4, 0.2, preferred_kinds=frozenset({"openrouter", "together"})
)


def option(id_, provider, price=("0", "0"), **kw) -> ModelOption:
    return ModelOption(
        id=id_,
        name=kw.pop("name", f"m{id_}"),
        model_id=kw.pop("model_id", f"m{id_}"),
        provider_id=provider,
        provider_kind=kw.pop("kind", "custom"),
        input_price=Decimal(price[0]),
        output_price=Decimal(price[1]),
        **kw,
    )


# Balanced scores, worked out by hand (cost .4, latency .4, quality .2; cap .01, 10 s):
CATALOG = [
    option(1, 1, ("1", "3"), latency_ms=500.0, quality=0.8),  # .32 + .38 + .16 = .86
    option(2, 2, quality=0.1),  # .4 + .36 + .02 = .78
    option(3, 3, ("5", "15"), latency_ms=100.0, quality=1.0),  # 0 + .396 + .2 = .596
    option(4, 4, ("1", "3"), latency_ms=500.0, quality=0.8, kind="together"),  # .86 + .1 = .96
    option(5, 1, ("0.5", "0.5"), latency_ms=9000.0, quality=0.2),  # .38 + .04 + .04 = .46
]
TABLE = build_table(CATALOG, [BALANCED])
KEYS = frozenset({1, 2, 3, 4})
BY_SCORE = [4, 1, 2, 3, 5]


def chain(**kw) -> list[int]:
    kw.setdefault("keyed_providers", KEYS)
    return [o.id for o in route(RouteRequest("auto", "balanced", **kw), TABLE)]


def test_the_highest_score_goes_first():
    # 4 is 1 from a provider of a kind the level prefers: .86 + .1 beats .86.
    assert chain() == BY_SCORE


@pytest.mark.parametrize(
    ("error_rates", "expected"),
    [
        ({}, [4, 1, 2, 3, 5]),
        ({4: 0.1}, [4, 1, 2, 3, 5]),  # .96 · .95 = .912
        ({4: 0.3}, [1, 4, 2, 3, 5]),  # .96 · .85 = .816
        ({4: 0.5}, [1, 2, 4, 3, 5]),  # .96 · .75 = .72
        ({1: 1.0}, [4, 2, 3, 1, 5]),  # .86 · .5 = .43 for both models of provider 1
        ({1: 1.0, 4: 1.0}, [2, 3, 4, 1, 5]),  # .48, .43, .23
        ({9: 1.0}, [4, 1, 2, 3, 5]),  # a provider not in the chain changes nothing
    ],
)
def test_an_error_rate_demotes_its_providers_models(error_rates, expected):
    assert chain(error_rates=error_rates) == expected


@pytest.mark.parametrize(
    ("preferred_providers", "preferred_models", "expected"),
    [
        (set(), set(), [4, 1, 2, 3, 5]),
        ({3}, set(), [3, 4, 1, 2, 5]),
        ({1}, set(), [1, 5, 4, 2, 3]),  # both of provider 1, in score order
        ({3, 2}, set(), [2, 3, 4, 1, 5]),
        (set(), {"m5"}, [5, 4, 1, 2, 3]),
        (set(), {"m5", "m2"}, [2, 5, 4, 1, 3]),
        ({3}, {"m5"}, [3, 5, 4, 1, 2]),
        ({9}, {"not-in-catalog"}, [4, 1, 2, 3, 5]),
    ],
)
def test_the_callers_preferred_providers_and_models_come_first_in_score_order(
    preferred_providers, preferred_models, expected
):
    got = chain(
        preferred_providers=frozenset(preferred_providers),
        preferred_models=frozenset(preferred_models),
    )
    assert got == expected


@pytest.mark.parametrize(
    ("probing", "extra", "expected"),
    [
        ({4}, {}, [1, 2, 3, 5, 4]),
        ({1}, {}, [4, 2, 3, 1, 5]),
        ({4, 2}, {}, [1, 3, 5, 4, 2]),
        # probing outranks the caller's preference: a provider on probation is tried last
        ({4}, {"preferred_providers": frozenset({4})}, [1, 2, 3, 5, 4]),
        ({3}, {"preferred_providers": frozenset({3, 2})}, [2, 4, 1, 5, 3]),
        ({4}, {"error_rates": {1: 1.0}}, [2, 3, 1, 5, 4]),
    ],
)
def test_a_provider_being_probed_goes_last(probing, extra, expected):
    assert chain(probing=frozenset(probing), **extra) == expected


def test_a_probing_provider_that_is_also_cooling_is_not_tried():
    assert chain(probing=frozenset({4}), cooling=frozenset({4})) == [1, 2, 3, 5]


def test_ties_are_broken_by_id_whatever_the_catalog_order():
    twins = [
        option(i, i % 3 + 1, ("0.2", "0.6"), quality=0.5, latency_ms=700.0) for i in range(10, 22)
    ]
    expected = list(range(10, 22))
    rng = random.Random(3)
    for _ in range(5):
        rng.shuffle(twins)
        table = build_table(twins, [BALANCED])
        got = route(RouteRequest("balanced", "balanced", frozenset({1, 2, 3})), table)
        assert [o.id for o in got] == expected


def test_ties_between_providers_of_an_explicit_model_are_broken_by_id():
    same = [option(i, i, ("1", "1"), name="llama-3.1-70b") for i in (7, 3, 5)]
    table = build_table(same, [BALANCED])
    req = RouteRequest("llama-3.1-70b", "balanced", frozenset({3, 5, 7}))
    assert [o.id for o in route(req, table)] == [3, 5, 7]
