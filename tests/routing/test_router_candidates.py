"""Which catalog models an alias may route to (SPEC §2 "Candidates"). Pure: no DB."""

from __future__ import annotations

from decimal import Decimal

import pytest

from routing.router import ModelOption, Policy, RouteRequest, build_table, level_for, route

ECO = Policy("eco", 0.001, 0.7, 0.2, 0.1, preferred_kinds=frozenset({"ollama", "groq"}))
BALANCED = Policy(
    "balanced", 0.01, 0.4, 0.4, 0.2, preferred_kinds=frozenset({"openrouter", "together"})
)
PRECISION = Policy("precision", 0.10, 0.1, 0.3, 0.6, preferred_kinds=frozenset({"openai"}))
POLICIES = (ECO, BALANCED, PRECISION)


def option(
    id_: int, *, provider: int = 1, price: tuple[str, str] = ("0", "0"), **kw
) -> ModelOption:
    kw.setdefault("name", f"m{id_}")
    kw.setdefault("model_id", kw["name"])
    kw.setdefault("provider_kind", "custom")
    return ModelOption(
        id=id_,
        provider_id=provider,
        input_price=Decimal(price[0]),
        output_price=Decimal(price[1]),
        **kw,
    )


def request(model: str = "balanced", **kw) -> RouteRequest:
    kw.setdefault("level", "balanced")
    kw.setdefault("keyed_providers", frozenset({1, 2, 3}))
    return RouteRequest(model=model, **kw)


def chain_ids(options, req: RouteRequest, policies=POLICIES) -> list[int]:
    return [o.id for o in route(req, build_table(options, policies))]


# The control model (id 1) fits every request below and, free and of top quality, ranks first;
# the subject (id 2) is what varies.
CONTROL = option(1, context_window=1_000_000, max_output_tokens=100_000, quality=1.0)


@pytest.mark.parametrize(
    ("keyed", "expected"),
    [
        ({1, 2}, [1, 2]),
        ({1}, [1]),
        (set(), []),
    ],
)
def test_a_model_whose_provider_has_no_usable_key_is_not_a_candidate(keyed, expected):
    subject = option(2, provider=2, quality=0.0)
    got = chain_ids([CONTROL, subject], request(keyed_providers=frozenset(keyed)))
    assert got == expected


@pytest.mark.parametrize(("cooling", "expected"), [(set(), [1, 2]), ({2}, [1]), ({1, 2}, [])])
def test_a_model_whose_provider_is_cooling_down_is_not_a_candidate(cooling, expected):
    subject = option(2, provider=2, quality=0.0)
    got = chain_ids([CONTROL, subject], request(cooling=frozenset(cooling)))
    assert got == expected


@pytest.mark.parametrize(
    ("request_mode", "expected"),
    [("chat", [1]), ("embedding", [2])],
)
def test_only_models_of_the_requested_mode_are_candidates(request_mode, expected):
    embed = option(2, mode="embedding")
    assert chain_ids([CONTROL, embed], request(mode=request_mode)) == expected


@pytest.mark.parametrize(
    ("window", "prompt", "max_out", "fits"),
    [
        (8192, 4096, 4096, True),  # exactly full
        (8192, 4097, 4096, False),
        (8192, 8192, 0, True),  # no max_tokens asked: the prompt alone must fit
        (8192, 8193, 0, False),
        (128_000, 100_000, 4000, True),
    ],
)
def test_a_model_whose_context_window_cannot_hold_prompt_and_output_is_not_a_candidate(
    window, prompt, max_out, fits
):
    subject = option(2, context_window=window, max_output_tokens=100_000)
    req = request(prompt_tokens=prompt, max_output_tokens=max_out)
    assert chain_ids([CONTROL, subject], req) == ([1, 2] if fits else [1])


@pytest.mark.parametrize(
    ("model_max_out", "asked", "fits"),
    [(4096, 4096, True), (4096, 4097, False), (1024, 0, True), (16384, 8000, True)],
)
def test_a_model_whose_max_output_is_below_the_requested_max_tokens_is_not_a_candidate(
    model_max_out, asked, fits
):
    subject = option(2, context_window=1_000_000, max_output_tokens=model_max_out)
    assert chain_ids([CONTROL, subject], request(max_output_tokens=asked)) == (
        [1, 2] if fits else [1]
    )


def test_an_embedding_models_max_output_does_not_limit_an_embedding_request():
    embed = option(2, mode="embedding", context_window=8192, max_output_tokens=0)
    assert chain_ids([embed], request(mode="embedding", max_output_tokens=16)) == [2]


@pytest.mark.parametrize(
    ("needs", "has", "fits"),
    [
        ({}, {}, True),
        ({"needs_tools": True}, {}, False),
        ({"needs_tools": True}, {"supports_tools": True}, True),
        ({"needs_vision": True}, {"supports_tools": True, "supports_json": True}, False),
        ({"needs_vision": True}, {"supports_vision": True}, True),
        ({"needs_json": True}, {}, False),
        ({"needs_json": True}, {"supports_json": True}, True),
        (
            {"needs_tools": True, "needs_vision": True, "needs_json": True},
            {"supports_tools": True, "supports_json": True},
            False,
        ),
        (
            {"needs_tools": True, "needs_vision": True, "needs_json": True},
            {"supports_tools": True, "supports_vision": True, "supports_json": True},
            True,
        ),
        ({}, {"supports_tools": True, "supports_vision": True}, True),  # unused: no matter
    ],
)
def test_a_model_lacking_a_capability_the_request_needs_is_not_a_candidate(needs, has, fits):
    control = option(1, quality=1.0, supports_tools=True, supports_vision=True, supports_json=True)
    subject = option(2, **has)
    assert chain_ids([control, subject], request(**needs)) == ([1, 2] if fits else [1])


@pytest.mark.parametrize(
    ("level", "price", "fits"),
    [
        # mean of input and output per 1M, over 1000, against the level's cap per 1K
        ("eco", ("0.50", "1.50"), True),  # 0.001: exactly at the cap
        ("eco", ("0.50", "1.52"), False),  # 0.00101
        ("eco", ("2.00", "0"), True),  # the mean, not the input price: 1.00 per 1M
        ("eco", ("2.04", "0"), False),
        ("eco", ("0", "0"), True),
        ("balanced", ("5", "15"), True),  # 0.01
        ("balanced", ("5", "15.02"), False),
        ("balanced", ("2.50", "10"), True),
        ("precision", ("50", "150"), True),  # 0.10
        ("precision", ("60", "150"), False),
        ("precision", ("15", "75"), True),
    ],
)
def test_a_model_above_the_levels_price_cap_is_not_a_candidate(level, price, fits):
    subject = option(2, price=price)
    assert chain_ids([CONTROL, subject], request(level)) == ([1, 2] if fits else [1])


@pytest.mark.parametrize(
    ("cap", "price"),
    [
        (Decimal("0.00007"), ("0.10", "0.04")),
        (Decimal("0.000065"), ("0.10", "0.03")),
        (Decimal("0.000084"), ("0.15", "0.018")),
        (Decimal("0.0003"), ("0.2", "0.4")),
    ],
)
def test_a_model_priced_exactly_at_an_odd_cap_is_a_candidate(cap, price):
    # Staff may set any cap; the snapshot passes it as float(Decimal). A model whose mean
    # price equals the cap exactly must not fall out through float rounding.
    policy = Policy("eco", float(cap), 0.7, 0.2, 0.1)
    subject = option(2, price=price)
    assert (Decimal(price[0]) + Decimal(price[1])) / 2 / 1000 == cap
    assert chain_ids([subject], request("eco"), policies=[policy]) == [2]


@pytest.mark.parametrize(
    ("price", "per_1k"),
    [
        (("0", "0"), 0.0),
        (("1", "3"), 0.002),
        (("0.15", "0.60"), 0.000375),
        (("2.50", "10.00"), 0.00625),
        (("3", "15"), 0.009),
        (("15", "75"), 0.045),
        (("0.02", "0"), 0.00001),
    ],
)
def test_price_per_1k_is_the_mean_of_input_and_output_per_1m_over_1000(price, per_1k):
    assert option(1, price=price).price_per_1k == pytest.approx(per_1k, rel=1e-12, abs=0)


# One model per level: 1 fits eco, 2 balanced, 3 only precision; id 4 fits no level.
LADDER = [
    option(1, price=("0.10", "0.40"), quality=0.3),
    option(2, price=("2.50", "10"), quality=0.6),
    option(3, price=("30", "60"), quality=0.9),
    option(4, price=("150", "600"), quality=1.0),
]
EXPECTED_AT = {"eco": {1}, "balanced": {1, 2}, "precision": {1, 2, 3}}


@pytest.mark.parametrize("caller_level", ["eco", "balanced", "precision"])
def test_auto_routes_at_the_callers_level(caller_level):
    got = chain_ids(LADDER, request("auto", level=caller_level))
    assert set(got) == EXPECTED_AT[caller_level]


@pytest.mark.parametrize("caller_level", ["eco", "balanced", "precision"])
@pytest.mark.parametrize("alias", ["eco", "balanced", "precision"])
def test_a_level_alias_routes_at_its_own_level_whatever_the_callers_level(alias, caller_level):
    got = chain_ids(LADDER, request(alias, level=caller_level))
    assert set(got) == EXPECTED_AT[alias]


def test_auto_at_a_level_without_a_policy_has_no_candidates():
    assert chain_ids(LADDER, request("auto", level="turbo")) == []


@pytest.mark.parametrize(
    ("model", "caller_level", "level"),
    [
        ("auto", "eco", "eco"),
        ("auto", "precision", "precision"),
        ("eco", "precision", "eco"),
        ("balanced", "eco", "balanced"),
        ("precision", "eco", "precision"),
        ("gpt-4o-mini", "eco", None),
        ("anthropic/claude-3-5-haiku", "balanced", None),
        ("Auto", "eco", None),  # aliases are exact, like model names
    ],
)
def test_level_for_maps_aliases_to_levels_and_explicit_models_to_none(model, caller_level, level):
    assert level_for(model, caller_level) == level


def test_an_alias_with_nothing_that_fits_gives_an_empty_chain():
    req = request("precision", prompt_tokens=10_000_000)
    assert chain_ids(LADDER, req) == []


def test_an_alias_without_auto_failover_gives_at_most_the_best_candidate():
    full = chain_ids(LADDER, request("precision"))
    assert len(full) == 3
    assert chain_ids(LADDER, request("precision", auto_failover=False)) == full[:1]
    assert (
        chain_ids(LADDER, request("precision", auto_failover=False, keyed_providers=frozenset()))
        == []
    )
