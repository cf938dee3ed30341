"""Explicit model names: honoured, ranked across providers, failover after them (SPEC §2)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from routing.router import ModelOption, Policy, RouteRequest, UnknownModel, build_table, route

POLICIES = (
    Policy("eco", 0.001, 0.7, 0.2, 0.1, preferred_kinds=frozenset({"ollama", "groq"})),
    Policy("balanced", 0.01, 0.4, 0.4, 0.2, preferred_kinds=frozenset({"openrouter", "together"})),
    Policy("precision", 0.10, 0.1, 0.3, 0.6, preferred_kinds=frozenset({"openai", "anthropic"})),
)
OPENAI, AZURE, OPENROUTER, ANTHROPIC = 1, 2, 3, 4
KIND = {OPENAI: "openai", AZURE: "azure_openai", OPENROUTER: "openrouter", ANTHROPIC: "anthropic"}


def option(id_, name, provider, price, **kw) -> ModelOption:
    return ModelOption(
        id=id_,
        name=name,
        model_id=kw.pop("model_id", name),
        provider_id=provider,
        provider_kind=KIND[provider],
        input_price=Decimal(price[0]),
        output_price=Decimal(price[1]),
        **kw,
    )


CATALOG = [
    # Cheap models: the level chains' heads. Balanced: small .82, mini .81; eco: mini .8925,
    # small .86.
    option(1, "mini", OPENAI, ("0.10", "0.40"), quality=0.3),
    option(2, "small", AZURE, ("0.50", "1.50"), quality=0.5),
    # One name, three providers. Scores — balanced: 12 .772 (preferred kind), 11 .714,
    # 10 .698; precision: 10 1.00975 (preferred kind), 11 .92175, 12 .8975;
    # eco (all above the cap, cost term 0): 11 .282, 10 .274, 12 .266.
    option(10, "gpt-4o", OPENAI, ("2.50", "10"), quality=0.9, latency_ms=800.0),
    option(11, "gpt-4o", AZURE, ("2.50", "10"), quality=0.9, latency_ms=400.0),
    option(12, "gpt-4o", OPENROUTER, ("2.60", "10.40"), quality=0.9, latency_ms=1200.0),
    # Above every level's cap (0.375 per 1K).
    option(20, "o1-pro", OPENAI, ("150", "600"), quality=1.0),
    # Named by clients one way, by the provider another. Balanced .804, precision .8876.
    option(
        30,
        "anthropic/claude-3-5-haiku",
        ANTHROPIC,
        ("0.80", "4"),
        model_id="claude-3-5-haiku-20241022",
        quality=0.7,
    ),
]
TABLE = build_table(CATALOG, POLICIES)
ALL_KEYS = frozenset(KIND)


def chain(model: str, level: str = "balanced", **kw) -> list[int]:
    kw.setdefault("keyed_providers", ALL_KEYS)
    return [o.id for o in route(RouteRequest(model=model, level=level, **kw), TABLE)]


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("eco", [20, 1, 2]),
        ("balanced", [20, 2, 1, 30, 12, 11, 10]),
        ("precision", [20, 10, 11, 12, 30, 2, 1]),
    ],
)
def test_an_explicit_model_is_honoured_even_above_the_levels_price_cap(level, expected):
    got = chain("o1-pro", level)
    assert got == expected
    assert chain("o1-pro", level, auto_failover=False) == [20]


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("balanced", [12, 11, 10]),  # the preferred kind's bonus outweighs its higher price
        ("precision", [10, 11, 12]),  # openai is preferred at precision
        ("eco", [11, 10, 12]),  # above eco's cap: cost scores 0, the fastest wins
    ],
)
def test_several_providers_serving_the_same_name_are_ranked_by_the_callers_level_score(
    level, expected
):
    assert chain("gpt-4o", level)[:3] == expected


@pytest.mark.parametrize(
    ("error_rates", "expected"),
    [
        ({}, [12, 11, 10]),
        ({OPENROUTER: 0.2}, [11, 10, 12]),  # .772 * 0.9 = .6948 < .698
        ({OPENROUTER: 0.1}, [12, 11, 10]),  # .772 * 0.95 = .7334 > .714
        ({AZURE: 0.1}, [12, 10, 11]),  # .714 * 0.95 = .6783 < .698
    ],
)
def test_an_error_rate_demotes_a_provider_of_an_explicit_model(error_rates, expected):
    assert chain("gpt-4o", error_rates=error_rates)[:3] == expected


@pytest.mark.parametrize(
    ("keyed", "cooling", "expected"),
    [
        ({OPENAI, AZURE, OPENROUTER}, set(), [12, 11, 10]),
        ({OPENAI, AZURE}, set(), [11, 10]),
        ({OPENAI}, set(), [10]),
        ({OPENAI, AZURE, OPENROUTER}, {OPENROUTER, AZURE}, [10]),
    ],
)
def test_only_keyed_and_healthy_providers_of_an_explicit_model_are_tried(keyed, cooling, expected):
    got = chain("gpt-4o", keyed_providers=frozenset(keyed), cooling=frozenset(cooling))
    assert [i for i in got if i in {10, 11, 12}] == expected
    assert got[: len(expected)] == expected


@pytest.mark.parametrize("model", ["anthropic/claude-3-5-haiku", "claude-3-5-haiku-20241022"])
def test_an_explicit_model_may_be_named_by_its_catalog_name_or_its_provider_model_id(model):
    assert chain(model, auto_failover=False) == [30]


@pytest.mark.parametrize(
    "model", ["gpt-5-ultra", "GPT-4o", "gpt-4o ", "", "claude-3-5-haiku", "openai/gpt-4o"]
)
def test_an_unknown_model_name_raises_unknown_model(model):
    with pytest.raises(UnknownModel):
        chain(model)


def test_an_unknown_model_is_unknown_even_to_a_caller_without_keys():
    with pytest.raises(UnknownModel):
        chain("gpt-5-ultra", keyed_providers=frozenset())


@pytest.mark.parametrize("model", ["gpt-4o", "o1-pro", "claude-3-5-haiku-20241022"])
def test_a_known_model_without_a_usable_key_gives_an_empty_chain(model):
    assert chain(model, keyed_providers=frozenset(), auto_failover=False) == []
    assert chain(model, keyed_providers=frozenset(), auto_failover=True) == []


@pytest.mark.parametrize("model", ["gpt-4o", "o1-pro"])
def test_without_failover_a_key_for_another_provider_does_not_serve_an_explicit_model(model):
    assert chain(model, keyed_providers=frozenset({ANTHROPIC}), auto_failover=False) == []


def test_with_auto_failover_a_known_model_without_a_key_falls_back_to_the_levels_chain():
    # SPEC §2: when the explicit model fails (here: it cannot even be tried) and the tenant
    # has auto-failover on, equivalent models follow.
    assert chain("o1-pro", "balanced", keyed_providers=frozenset({AZURE})) == [2, 11]


@pytest.mark.parametrize(
    ("model", "level", "expected"),
    [
        ("gpt-4o", "balanced", [12, 11, 10, 2, 1, 30]),
        ("gpt-4o", "eco", [11, 10, 12, 1, 2]),
        ("mini", "balanced", [1, 2, 30, 12, 11, 10]),
        ("small", "eco", [2, 1]),
        ("anthropic/claude-3-5-haiku", "precision", [30, 10, 11, 12, 2, 1]),
    ],
)
def test_with_auto_failover_the_explicit_candidates_come_first_then_the_levels_chain_once(
    model, level, expected
):
    got = chain(model, level)
    assert got == expected
    assert len(got) == len(set(got))


@pytest.mark.parametrize(
    ("model", "level", "expected"),
    [
        ("gpt-4o", "balanced", [12]),
        ("gpt-4o", "precision", [10]),
        ("o1-pro", "eco", [20]),
        ("mini", "precision", [1]),
    ],
)
def test_without_auto_failover_an_explicit_model_gives_at_most_one_entry(model, level, expected):
    assert chain(model, level, auto_failover=False) == expected


def test_an_explicit_model_that_cannot_hold_the_request_is_skipped():
    # 8192-token windows everywhere: nothing holds 10k prompt tokens.
    assert chain("gpt-4o", prompt_tokens=10_000, auto_failover=False) == []
    assert chain("gpt-4o", prompt_tokens=10_000) == []
    assert chain("gpt-4o", needs_vision=True) == []


def test_the_callers_preferred_provider_goes_first_among_an_explicit_models_providers():
    got = chain("gpt-4o", preferred_providers=frozenset({OPENAI}))
    assert got[:3] == [10, 12, 11]
