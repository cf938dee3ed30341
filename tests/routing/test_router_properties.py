"""Router properties over random catalogs, policies and requests (hypothesis).

The reference below restates SPEC §2 on its own (exact Decimal prices, the score formula);
the router must agree with it on every generated input.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routing.router import (
    PREFERRED_KIND_BONUS,
    UNKNOWN_LATENCY_MS,
    ModelOption,
    Policy,
    RouteRequest,
    RoutingTable,
    UnknownModel,
    build_table,
    route,
    static_score,
)

LEVELS = ("eco", "balanced", "precision")
ALIASES = ("auto", *LEVELS)
KINDS = ("openai", "anthropic", "groq", "openrouter", "together", "ollama", "custom")
NAMES = tuple(f"model-{i}" for i in range(12))
PROVIDERS = tuple(range(1, 9))

PROPERTY_SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# --- strategies -----------------------------------------------------------------------------

prices = st.one_of(
    st.decimals(min_value=0, max_value=200, places=2),
    st.decimals(min_value=0, max_value=2, places=3),
    st.sampled_from([Decimal(0), Decimal("0.10"), Decimal("0.04"), Decimal("2"), Decimal("20")]),
)
caps = st.one_of(
    # SPEC defaults, odd ones staff might type, and a free-only cap
    st.sampled_from(["0", "0.00007", "0.0003", "0.001", "0.01", "0.1", "1"]).map(Decimal),
    st.decimals(min_value=0, max_value=1, places=6),
)
unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
subsets = st.frozensets(st.sampled_from(PROVIDERS))


@st.composite
def catalogs(draw) -> list[ModelOption]:
    kind_of = dict(
        zip(PROVIDERS, draw(st.lists(st.sampled_from(KINDS), min_size=8, max_size=8)), strict=True)
    )
    n = draw(st.integers(min_value=1, max_value=60))
    ids = draw(st.lists(st.integers(1, 100_000), min_size=n, max_size=n, unique=True))
    options = []
    for id_ in ids:
        name = draw(st.sampled_from(NAMES))
        provider = draw(st.sampled_from(PROVIDERS))
        options.append(
            ModelOption(
                id=id_,
                name=name,
                model_id=draw(st.sampled_from([name, f"{kind_of[provider]}/{name}"])),
                provider_id=provider,
                provider_kind=kind_of[provider],
                mode=draw(st.sampled_from(["chat", "chat", "chat", "embedding"])),
                input_price=draw(prices),
                output_price=draw(prices),
                context_window=draw(st.sampled_from([2048, 8192, 32_768, 128_000, 1_000_000])),
                max_output_tokens=draw(st.sampled_from([0, 1024, 4096, 16_384])),
                supports_tools=draw(st.booleans()),
                supports_vision=draw(st.booleans()),
                supports_json=draw(st.booleans()),
                quality=draw(unit),
                latency_ms=draw(st.one_of(st.none(), st.floats(0.0, 30_000.0))),
            )
        )
    return options


@st.composite
def policy_sets(draw) -> tuple[Policy, ...]:
    return tuple(
        Policy(
            level=level,
            max_price_per_1k=float(draw(caps)),  # as the snapshot does: float(Decimal)
            weight_cost=draw(unit),
            weight_latency=draw(unit),
            weight_quality=draw(unit),
            max_latency_ms=float(draw(st.sampled_from([0, 500, 2000, 10_000, 60_000]))),
            preferred_kinds=draw(st.frozensets(st.sampled_from(KINDS), max_size=3)),
        )
        for level in LEVELS
    )


def requests(models: st.SearchStrategy[str]) -> st.SearchStrategy[RouteRequest]:
    return st.builds(
        RouteRequest,
        model=models,
        level=st.sampled_from(LEVELS),
        keyed_providers=subsets,
        prompt_tokens=st.one_of(st.just(0), st.integers(0, 300_000)),
        max_output_tokens=st.one_of(st.just(0), st.integers(0, 40_000)),
        mode=st.sampled_from(["chat", "chat", "embedding"]),
        needs_tools=st.booleans(),
        needs_vision=st.booleans(),
        needs_json=st.booleans(),
        auto_failover=st.booleans(),
        cooling=subsets,
        probing=subsets,
        error_rates=st.dictionaries(st.sampled_from(PROVIDERS), unit),
        preferred_providers=subsets,
        preferred_models=st.frozensets(st.sampled_from(NAMES), max_size=3),
    )


alias_requests = requests(st.sampled_from(ALIASES))
explicit_names = st.one_of(
    st.sampled_from(NAMES),
    st.builds(lambda k, n: f"{k}/{n}", st.sampled_from(KINDS), st.sampled_from(NAMES)),
)
explicit_requests = requests(explicit_names)

# --- the reference ---------------------------------------------------------------------------


def level_of(request: RouteRequest) -> str:
    return request.level if request.model == "auto" else request.model


def mean_price_per_1k(o: ModelOption) -> Decimal:
    return (o.input_price + o.output_price) / 2 / 1000


def under_cap(o: ModelOption, policy: Policy) -> bool:
    return mean_price_per_1k(o) <= Decimal(policy.max_price_per_1k)


def can_serve(o: ModelOption, r: RouteRequest) -> bool:
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


def spec_score(o: ModelOption, p: Policy) -> float:
    cost = float(mean_price_per_1k(o))
    if p.max_price_per_1k > 0:
        cost_term = 1 - min(cost / p.max_price_per_1k, 1)
    else:
        cost_term = 1.0 if cost == 0 else 0.0
    latency = UNKNOWN_LATENCY_MS if o.latency_ms is None else o.latency_ms
    if p.max_latency_ms > 0:
        latency_term = 1 - min(latency / p.max_latency_ms, 1)
    else:
        latency_term = 1.0 if latency == 0 else 0.0
    bonus = PREFERRED_KIND_BONUS if o.provider_kind in p.preferred_kinds else 0.0
    return (
        p.weight_cost * cost_term
        + p.weight_latency * latency_term
        + p.weight_quality * o.quality
        + bonus
    )


def chain_key(o: ModelOption, r: RouteRequest, p: Policy) -> tuple:
    """(probing last, caller's preferred first, final score descending, id)."""
    final = static_score(o, p) * (1 - 0.5 * r.error_rates.get(o.provider_id, 0.0))
    preferred = o.provider_id in r.preferred_providers or o.name in r.preferred_models
    return (o.provider_id in r.probing, not preferred, -final, o.id)


def expected_level_chain(catalog, r: RouteRequest, policy: Policy) -> list[ModelOption]:
    fitting = [o for o in catalog if under_cap(o, policy) and can_serve(o, r)]
    return sorted(fitting, key=lambda o: chain_key(o, r, policy))


def policy_for(table: RoutingTable, level: str) -> Policy:
    return table.policies[level]


# --- aliases ---------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(catalog=catalogs(), policies=policy_sets(), request=alias_requests)
def test_no_alias_chain_member_breaks_a_candidate_rule(catalog, policies, request):
    table = build_table(catalog, policies)
    policy = policy_for(table, level_of(request))
    for o in route(request, table):
        assert under_cap(o, policy), "above the level's price cap"
        assert o.provider_id in request.keyed_providers, "no usable key"
        assert o.provider_id not in request.cooling, "cooling down"
        assert o.mode == request.mode, "wrong mode"
        assert o.context_window >= request.prompt_tokens + request.max_output_tokens, "too small"
        assert o.mode != "chat" or o.max_output_tokens >= request.max_output_tokens, "short output"
        assert o.supports_tools or not request.needs_tools, "no tools"
        assert o.supports_vision or not request.needs_vision, "no vision"
        assert o.supports_json or not request.needs_json, "no json"


@PROPERTY_SETTINGS
@given(catalog=catalogs(), policies=policy_sets(), request=alias_requests)
def test_an_alias_chain_holds_every_model_that_fits_once(catalog, policies, request):
    table = build_table(catalog, policies)
    expected = expected_level_chain(catalog, request, policy_for(table, level_of(request)))
    got = route(request, table)
    if request.auto_failover:
        assert {o.id for o in got} == {o.id for o in expected}
        assert len(got) == len(expected)
    else:
        assert len(got) == min(1, len(expected))


@PROPERTY_SETTINGS
@given(catalog=catalogs(), policies=policy_sets(), request=alias_requests)
def test_an_alias_chain_is_sorted_by_final_score_within_preferred_first_and_probing_last(
    catalog, policies, request
):
    table = build_table(catalog, policies)
    policy = policy_for(table, level_of(request))
    got = route(request, table)
    keys = [chain_key(o, request, policy) for o in got]
    assert keys == sorted(keys)
    assert got == expected_level_chain(catalog, request, policy)[: len(got)]


@PROPERTY_SETTINGS
@given(
    input_price=st.decimals(min_value=0, max_value=200, places=3),
    output_price=st.decimals(min_value=0, max_value=200, places=3),
    level=st.sampled_from(ALIASES),
)
def test_a_model_priced_exactly_at_the_cap_is_a_candidate(input_price, output_price, level):
    model = ModelOption(
        1, "m", "m", 1, "custom", input_price=input_price, output_price=output_price
    )
    cap = float((input_price + output_price) / 2 / 1000)  # a cap staff typed as this Decimal
    policies = [Policy(lv, cap, 0.4, 0.4, 0.2) for lv in LEVELS]
    request = RouteRequest(level, "balanced", frozenset({1}))
    assert route(request, build_table([model], policies)) == [model]


@PROPERTY_SETTINGS
@given(catalog=catalogs(), policies=policy_sets())
def test_static_score_is_the_spec_formula(catalog, policies):
    for policy in policies:
        for o in catalog:
            assert static_score(o, policy) == pytest.approx(spec_score(o, policy), abs=1e-9)


# --- explicit models -------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(catalog=catalogs(), policies=policy_sets(), request=explicit_requests)
def test_an_explicit_chain_is_its_fitting_providers_by_score_then_the_levels_chain(
    catalog, policies, request
):
    table = build_table(catalog, policies)
    named = [o for o in catalog if request.model in (o.name, o.model_id)]
    if not named:
        with pytest.raises(UnknownModel):
            route(request, table)
        return
    policy = policy_for(table, request.level)
    explicit = sorted(
        (o for o in named if can_serve(o, request)), key=lambda o: chain_key(o, request, policy)
    )
    got = route(request, table)
    if not request.auto_failover:
        assert got == explicit[:1]
        return
    head = {o.id for o in explicit}
    rest = [o for o in expected_level_chain(catalog, request, policy) if o.id not in head]
    assert got == explicit + rest
    assert len({o.id for o in got}) == len(got)


# --- determinism -----------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(
    catalog=catalogs(),
    policies=policy_sets(),
    request=st.one_of(alias_requests, explicit_requests),
    data=st.data(),
)
def test_route_is_deterministic_whatever_the_catalog_order(catalog, policies, request, data):
    shuffled = data.draw(st.permutations(catalog))
    table, again = build_table(catalog, policies), build_table(shuffled, policies)
    try:
        first = route(request, table)
    except UnknownModel:
        with pytest.raises(UnknownModel):
            route(request, again)
        return
    assert route(request, table) == first
    assert route(request, again) == first
