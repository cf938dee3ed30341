"""The router: request facts and a routing table in, a ranked fallback chain out.

Pure: no I/O, no clock, no Django. The table is built once per configuration snapshot; the
per-request work is one pass over the level's pre-sorted models with cheap set lookups, so a
decision over 500 catalog models stays well under 100 µs.

Scoring (SPEC §2):
    score = w_cost·(1 - price/max_price) + w_latency·(1 - latency/max_latency) + w_quality·quality
    final = score · (1 - 0.5·recent_error_rate)
The level's preferred provider kinds get a bonus of PREFERRED_KIND_BONUS on the static score;
a caller's own preferred providers and models go first, in score order; a provider that is
being probed after a cool-down goes last.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

ALIAS_LEVELS = {"eco": "eco", "balanced": "balanced", "precision": "precision"}
AUTO = "auto"
PREFERRED_KIND_BONUS = 0.1
UNKNOWN_LATENCY_MS = 1000.0


@dataclass(frozen=True, slots=True)
class ModelOption:
    """A catalog model as the router sees it (prices per 1M tokens)."""

    id: int
    name: str
    model_id: str
    provider_id: int
    provider_kind: str
    mode: str = "chat"
    input_price: Decimal = Decimal(0)
    output_price: Decimal = Decimal(0)
    cached_price: Decimal = Decimal(0)
    context_window: int = 8192
    max_output_tokens: int = 4096
    supports_tools: bool = False
    supports_vision: bool = False
    supports_json: bool = False
    quality: float = 0.5
    latency_ms: float | None = None

    @property
    def price_per_1k(self) -> float:
        """Mean of input and output price per 1K tokens: what power levels cap."""
        # Divide before converting: float(sum) / 2000 rounds twice and can land a model priced
        # exactly at a cap (0.10 + 0.04 per 1M vs 0.00007 per 1K) just above it.
        return float((self.input_price + self.output_price) / 2000)


@dataclass(frozen=True, slots=True)
class Policy:
    level: str
    max_price_per_1k: float
    weight_cost: float
    weight_latency: float
    weight_quality: float
    max_latency_ms: float = 10_000.0
    preferred_kinds: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """What the router needs to know of one request and its caller."""

    model: str
    level: str  # the caller's power level (used for aliases `auto` and for failover)
    keyed_providers: frozenset[int]  # providers with a usable key for this caller
    prompt_tokens: int = 0
    max_output_tokens: int = 0
    mode: str = "chat"
    needs_tools: bool = False
    needs_vision: bool = False
    needs_json: bool = False
    auto_failover: bool = True
    cooling: frozenset[int] = frozenset()
    probing: frozenset[int] = frozenset()
    error_rates: Mapping[int, float] = field(default_factory=dict)
    preferred_providers: frozenset[int] = frozenset()
    preferred_models: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class RoutingTable:
    """Models pre-sorted by static score per level, and indexed by name for explicit requests."""

    by_level: Mapping[str, tuple[tuple[float, ModelOption], ...]]
    by_name: Mapping[str, tuple[ModelOption, ...]]
    policies: Mapping[str, Policy]


class UnknownModel(LookupError):
    """The requested model is neither an alias nor in the catalog."""


def _share(value: float, limit: float) -> float:
    """value / limit, capped at 1; a zero limit (a free-only cap) leaves zero at zero."""
    if limit <= 0:
        return 1.0 if value > 0 else 0.0
    return min(value / limit, 1.0)


def static_score(option: ModelOption, policy: Policy) -> float:
    cost_term = 1.0 - _share(option.price_per_1k, policy.max_price_per_1k)
    latency = option.latency_ms if option.latency_ms is not None else UNKNOWN_LATENCY_MS
    latency_term = 1.0 - _share(latency, policy.max_latency_ms)
    score = (
        policy.weight_cost * cost_term
        + policy.weight_latency * latency_term
        + policy.weight_quality * option.quality
    )
    if option.provider_kind in policy.preferred_kinds:
        score += PREFERRED_KIND_BONUS
    return score


def build_table(options: Iterable[ModelOption], policies: Iterable[Policy]) -> RoutingTable:
    """Index `options` for routing: per level, those under its price cap, best first."""
    options = list(options)
    policy_map = {p.level: p for p in policies}
    by_level = {}
    for level, policy in policy_map.items():
        scored = [
            (static_score(o, policy), o)
            for o in options
            if o.price_per_1k <= policy.max_price_per_1k
        ]
        scored.sort(key=lambda pair: (-pair[0], pair[1].id))
        by_level[level] = tuple(scored)
    by_name: dict[str, list[ModelOption]] = {}
    for o in options:
        by_name.setdefault(o.name, []).append(o)
        if o.model_id != o.name:
            by_name.setdefault(o.model_id, []).append(o)
    return RoutingTable(
        by_level=by_level,
        by_name={name: tuple(v) for name, v in by_name.items()},
        policies=policy_map,
    )


def fits(option: ModelOption, request: RouteRequest) -> bool:
    """Whether `option` can serve `request` right now (key, mode, size, capabilities)."""
    return (
        option.provider_id in request.keyed_providers
        and option.provider_id not in request.cooling
        and option.mode == request.mode
        and option.context_window >= request.prompt_tokens + request.max_output_tokens
        and (
            not request.max_output_tokens
            or option.max_output_tokens >= request.max_output_tokens
            or option.mode != "chat"
        )
        and (option.supports_tools or not request.needs_tools)
        and (option.supports_vision or not request.needs_vision)
        and (option.supports_json or not request.needs_json)
    )


def _rank(scored: Iterable[tuple[float, ModelOption]], request: RouteRequest) -> list[ModelOption]:
    """The options that fit, best first. `fits` inlined: this loop is the router's whole cost
    (~220 ns a model as a call; 500 models took 108 µs mean, 80 µs inlined)."""
    keyed, cooling, mode = request.keyed_providers, request.cooling, request.mode
    needed_context = request.prompt_tokens + request.max_output_tokens
    max_output = request.max_output_tokens if mode == "chat" else 0
    tools, vision, json_mode = request.needs_tools, request.needs_vision, request.needs_json
    rates, probing = request.error_rates, request.probing
    preferred_providers, preferred_models = request.preferred_providers, request.preferred_models
    ranked = []
    for score, option in scored:
        provider_id = option.provider_id
        if (
            provider_id not in keyed
            or provider_id in cooling
            or option.mode != mode
            or option.context_window < needed_context
            or (max_output and option.max_output_tokens < max_output)
            or (tools and not option.supports_tools)
            or (vision and not option.supports_vision)
            or (json_mode and not option.supports_json)
        ):
            continue
        rate = rates.get(provider_id)
        final = score * (1.0 - 0.5 * rate) if rate else score
        first = provider_id in preferred_providers or option.name in preferred_models
        ranked.append((provider_id in probing, not first, -final, option.id, option))
    ranked.sort(key=lambda row: row[:4])
    return [row[4] for row in ranked]


def level_for(model: str, caller_level: str) -> str | None:
    """The power level an alias stands for, or None for an explicit model."""
    if model == AUTO:
        return caller_level
    return ALIAS_LEVELS.get(model)


def route(request: RouteRequest, table: RoutingTable) -> list[ModelOption]:
    """The fallback chain for `request`, best first; empty when nothing can serve it.

    Raises UnknownModel when `request.model` is neither an alias nor a catalog name.
    """
    level = level_for(request.model, request.level)
    if level is not None:
        chain = _rank(table.by_level.get(level, ()), request)
        return chain if request.auto_failover else chain[:1]

    named = table.by_name.get(request.model)
    if not named:
        raise UnknownModel(request.model)
    policy = table.policies.get(request.level)
    # An explicit model is honoured whatever the level's price cap; its providers are
    # ranked by the caller's level weights.
    explicit = _rank(((static_score(o, policy) if policy else 0.0, o) for o in named), request)
    if not request.auto_failover:
        return explicit[:1]
    seen = {o.id for o in explicit}
    equivalents = [
        o for o in _rank(table.by_level.get(request.level, ()), request) if o.id not in seen
    ]
    return explicit + equivalents


def known_names(table: RoutingTable) -> Sequence[str]:
    return sorted(table.by_name)
