"""The pricing map (LiteLLM's model_prices_and_context_window.json) as catalog entries.

Pure: plain data in, frozen dataclasses out; no database, no settings. The service in
`routing.services.import_pricing_map` turns the entries into CatalogModel rows.

Each entry of the map is `key -> {litellm_provider, mode, input_cost_per_token, ...}`. Only
chat and embedding models are kept; other modes (image generation, audio, rerank, ...) are
not routable here and are passed over silently. An entry that cannot be read (a price that is
not a number or is negative, no mode, no provider, no per-token input price) is reported with
its key and skipped; a source that is not a JSON object, is empty, or is mostly malformed
raises CatalogSourceError so that a sync changes nothing.

Prices are per 1M tokens (the map's per-token cost x 1e6, 6 decimals); the cached-input price
is cache_read_input_token_cost, or the input price when the map has none. The context window
is max_input_tokens, else max_tokens, else 8192; max output is max_output_tokens, else
max_tokens, else 4096. Tools / vision / JSON come from supports_function_calling /
supports_vision / supports_response_schema.

Naming (what the provider gets and what clients send):
    model_id  the key without a leading "<litellm_provider>/" prefix
              ("fireworks_ai/accounts/fireworks/models/x" -> "accounts/fireworks/models/x").
    name      OpenAI models: the bare model id ("gpt-4o-mini").
              Others: the key as in the map when it has a "/" prefix, otherwise
              "<litellm_provider>/<key>" ("claude-haiku-4-5" -> "anthropic/claude-haiku-4-5").
When two keys give the same model id for one provider ("deepseek-chat" and
"deepseek/deepseek-chat"), the provider-prefixed key wins.

Quality heuristic (`default_quality`), a default 0..1 score that staff may override:
    0.15 base
    + 0.50 x price tier: the output price per 1M tokens (the higher of input and output,
      so embeddings use their input price), log-scaled between $0.10 (0) and $100 (1):
      vendors charge more for stronger models
    + 0.15 x context window, log-scaled between 8K (0) and 1M tokens (1)
    + 0.10 x the share of tools / vision / JSON-schema support
    ± 0.05 by family: names with "mini", "nano", "haiku", "flash", "lite", "small", ...
      lose 0.05; "opus", "sonnet", "o1", "o3", "4o", "pro", "large", "ultra" gain 0.05
    clamped to [0.05, 0.95] and rounded to 3 decimals (so re-imports compare exactly).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Protocol

MODES = ("chat", "embedding")
OPENAI = "openai"
SPEC_KEY = "sample_spec"  # the map's self-description, not a model

TOKENS_PER_MILLION = Decimal(1_000_000)
PRICE_QUANTUM = Decimal("0.000001")
# CatalogModel prices are DecimalField(max_digits=14, decimal_places=6): 8 integer digits.
MAX_PRICE_PER_MTOK = Decimal(10) ** 8
# PositiveIntegerField's ceiling on PostgreSQL.
MAX_TOKENS = 2**31 - 1
MAX_NAME_CHARS = 200  # CatalogModel.name / model_id max_length
# Used when the map gives no limit; CatalogModel's own defaults.
DEFAULT_CONTEXT_WINDOW = 8192
DEFAULT_MAX_OUTPUT_TOKENS = 4096
# More than this share of malformed entries means the file itself is wrong, not a few rows.
MAX_MALFORMED_SHARE = 0.5

# Quality heuristic (see the module docstring).
QUALITY_BASE = 0.15
QUALITY_PRICE_WEIGHT = 0.50
QUALITY_CONTEXT_WEIGHT = 0.15
QUALITY_CAPABILITY_WEIGHT = 0.10
QUALITY_FAMILY_BUMP = 0.05
QUALITY_MIN, QUALITY_MAX = 0.05, 0.95
PRICE_TIER_LOW_USD, PRICE_TIER_HIGH_USD = 0.10, 100.0  # per 1M output tokens
CONTEXT_LOW, CONTEXT_HIGH = 8_192, 1_048_576
SMALL_FAMILY = frozenset({"mini", "nano", "haiku", "flash", "lite", "small", "tiny", "instant"})
LARGE_FAMILY = frozenset({"opus", "sonnet", "o1", "o3", "4o", "pro", "large", "ultra"})
_NAME_TOKENS = re.compile(r"[a-z0-9]+")


class CatalogSourceError(ValueError):
    """The source as a whole cannot be used; nothing may be imported from it."""


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One chat or embedding model of the pricing map, prices per 1M tokens."""

    pricing_provider: str
    key: str
    model_id: str
    name: str
    mode: str
    input_price_per_mtok: Decimal
    output_price_per_mtok: Decimal
    cached_input_price_per_mtok: Decimal
    context_window: int
    max_output_tokens: int
    supports_tools: bool
    supports_vision: bool
    supports_json: bool


@dataclass(frozen=True, slots=True)
class SkippedEntry:
    """An entry that could not be read, and why."""

    key: str
    reason: str
    pricing_provider: str = ""


@dataclass(frozen=True, slots=True)
class ParsedCatalog:
    """Every usable entry of a source, and the malformed ones that were skipped."""

    entries: tuple[CatalogEntry, ...]
    skipped: tuple[SkippedEntry, ...]
    total: int  # entries in the source, the spec entry excluded

    def entries_for(self, pricing_provider: str) -> list[CatalogEntry]:
        return [e for e in self.entries if e.pricing_provider == pricing_provider]

    def skipped_for(self, pricing_providers: set[str]) -> list[SkippedEntry]:
        """Skipped entries of these providers, and those whose provider is unknown."""
        return [
            s
            for s in self.skipped
            if not s.pricing_provider or s.pricing_provider in pricing_providers
        ]


class _Malformed(ValueError):
    pass


class PricedModel(Protocol):
    """What the quality heuristic reads: a CatalogEntry or a CatalogModel row."""

    name: str
    mode: str
    input_price_per_mtok: Decimal
    output_price_per_mtok: Decimal
    context_window: int
    supports_tools: bool
    supports_vision: bool
    supports_json: bool


def load_source(source: Mapping[str, Any] | str | os.PathLike[str]) -> Mapping[str, Any]:
    """The map itself, read from a file when given a path; CatalogSourceError if unreadable."""
    if isinstance(source, Mapping):
        return source
    if not isinstance(source, str | os.PathLike):
        raise CatalogSourceError(
            f"The pricing map must be a JSON object, not {type(source).__name__}."
        )
    path = Path(source)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CatalogSourceError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CatalogSourceError(f"{path} is not valid JSON: {exc}.") from exc
    if not isinstance(data, Mapping):
        raise CatalogSourceError(
            f"{path} must hold a JSON object of models, not a {type(data).__name__}."
        )
    return data


def parse_pricing_map(source: Any) -> ParsedCatalog:
    """Every chat and embedding entry of `source`; CatalogSourceError if the source is unusable."""
    if not isinstance(source, Mapping):
        raise CatalogSourceError(
            f"The pricing map must be a JSON object of models, not a {type(source).__name__}."
        )
    chosen: dict[tuple[str, str], CatalogEntry] = {}
    skipped: list[SkippedEntry] = []
    total = 0
    for key, raw in source.items():
        if key == SPEC_KEY:
            continue
        total += 1
        try:
            entry = parse_entry(key, raw)
        except _Malformed as exc:
            provider = raw.get("litellm_provider") if isinstance(raw, Mapping) else ""
            skipped.append(
                SkippedEntry(
                    key=str(key),
                    reason=str(exc),
                    pricing_provider=provider if isinstance(provider, str) else "",
                )
            )
            continue
        if entry is None:
            continue
        slot = (entry.pricing_provider, entry.model_id)
        # Two keys for one model: the provider-prefixed one is LiteLLM's canonical key.
        if slot not in chosen or entry.key != entry.model_id:
            chosen[slot] = entry
    if total == 0:
        raise CatalogSourceError("The pricing map has no entries.")
    if len(skipped) > total * MAX_MALFORMED_SHARE:
        first = skipped[0]
        raise CatalogSourceError(
            f"{len(skipped)} of {total} entries are malformed "
            f"(e.g. {first.key!r}: {first.reason}); refusing the whole source."
        )
    return ParsedCatalog(entries=tuple(chosen.values()), skipped=tuple(skipped), total=total)


def parse_entry(key: Any, raw: Any) -> CatalogEntry | None:
    """One entry, None when its mode is not routable here; _Malformed says what is wrong."""
    if not isinstance(key, str) or not key.strip():
        raise _Malformed("the key is empty or not a string")
    if not isinstance(raw, Mapping):
        raise _Malformed(f"the entry is a {type(raw).__name__}, not an object")
    mode = raw.get("mode")
    if mode is None:
        raise _Malformed("no mode")
    if not isinstance(mode, str):
        raise _Malformed(f"mode is not a string: {_show(mode)}")
    if mode not in MODES:
        return None
    provider = raw.get("litellm_provider")
    if not isinstance(provider, str) or not provider.strip():
        raise _Malformed("no litellm_provider")

    model_id = key.removeprefix(f"{provider}/")
    if not model_id:
        raise _Malformed("the key names no model")
    name = client_name(pricing_provider=provider, key=key, model_id=model_id)
    if len(name) > MAX_NAME_CHARS or len(model_id) > MAX_NAME_CHARS:
        raise _Malformed(f"the name is longer than {MAX_NAME_CHARS} characters")

    if raw.get("input_cost_per_token") is None:
        raise _Malformed("no per-token input price (input_cost_per_token)")
    input_price = _price_per_mtok(raw, "input_cost_per_token")
    if raw.get("output_cost_per_token") is None and mode == "chat":
        raise _Malformed("no per-token output price (output_cost_per_token)")
    output_price = _price_per_mtok(raw, "output_cost_per_token")
    cached_price = (
        input_price
        if raw.get("cache_read_input_token_cost") is None
        else _price_per_mtok(raw, "cache_read_input_token_cost")
    )

    max_input = _tokens(raw, "max_input_tokens")
    max_tokens = _tokens(raw, "max_tokens")
    max_output = _tokens(raw, "max_output_tokens")
    context_window = max_input or max_tokens or DEFAULT_CONTEXT_WINDOW
    return CatalogEntry(
        pricing_provider=provider,
        key=key,
        model_id=model_id,
        name=name,
        mode=mode,
        input_price_per_mtok=input_price,
        output_price_per_mtok=output_price,
        cached_input_price_per_mtok=cached_price,
        context_window=context_window,
        max_output_tokens=max_output
        or min(max_tokens or DEFAULT_MAX_OUTPUT_TOKENS, context_window),
        supports_tools=raw.get("supports_function_calling") is True,
        supports_vision=raw.get("supports_vision") is True,
        supports_json=raw.get("supports_response_schema") is True,
    )


def client_name(*, pricing_provider: str, key: str, model_id: str) -> str:
    """The name clients send for a map entry (the rule is in the module docstring)."""
    if pricing_provider == OPENAI:
        return model_id
    return key if "/" in key else f"{pricing_provider}/{key}"


def default_quality(model: PricedModel) -> float:
    """The heuristic 0..1 quality of a model (see the module docstring)."""
    # The higher price is the output price for chat models and the input price for embeddings.
    price = max(model.input_price_per_mtok, model.output_price_per_mtok)
    price_tier = _log_share(float(price), PRICE_TIER_LOW_USD, PRICE_TIER_HIGH_USD)
    context = _log_share(float(model.context_window), CONTEXT_LOW, CONTEXT_HIGH)
    capabilities = (model.supports_tools + model.supports_vision + model.supports_json) / 3
    score = (
        QUALITY_BASE
        + QUALITY_PRICE_WEIGHT * price_tier
        + QUALITY_CONTEXT_WEIGHT * context
        + QUALITY_CAPABILITY_WEIGHT * capabilities
        + _family_bump(model.name)
    )
    return round(min(QUALITY_MAX, max(QUALITY_MIN, score)), 3)


def _family_bump(name: str) -> float:
    tokens = set(_NAME_TOKENS.findall(name.lower().rsplit("/", 1)[-1]))
    if tokens & SMALL_FAMILY:
        return -QUALITY_FAMILY_BUMP
    if tokens & LARGE_FAMILY:
        return QUALITY_FAMILY_BUMP
    return 0.0


def _log_share(value: float, low: float, high: float) -> float:
    """Where `value` sits between `low` (0) and `high` (1) on a log scale, clamped."""
    if value <= low:
        return 0.0
    if value >= high:
        return 1.0
    return math.log(value / low) / math.log(high / low)


def _price_per_mtok(raw: Mapping[str, Any], field: str) -> Decimal:
    value = raw.get(field)
    if value is None:
        return Decimal(0)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Malformed(f"{field} is not a number: {_show(value)}")
    if not math.isfinite(value):
        raise _Malformed(f"{field} is not finite")
    if value < 0:
        raise _Malformed(f"{field} is negative: {value!r}")
    # repr() gives the shortest decimal that round-trips, so 1.5e-07 becomes exactly 0.15.
    price = (Decimal(repr(value)) * TOKENS_PER_MILLION).quantize(PRICE_QUANTUM, ROUND_HALF_UP)
    if price >= MAX_PRICE_PER_MTOK:
        raise _Malformed(f"{field} is out of range: {value!r}")
    return price


def _tokens(raw: Mapping[str, Any], field: str) -> int | None:
    value = raw.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Malformed(f"{field} is not a number: {_show(value)}")
    if not math.isfinite(value) or value < 0:
        raise _Malformed(f"{field} is negative or not finite: {value!r}")
    if value > MAX_TOKENS:
        raise _Malformed(f"{field} is out of range: {value!r}")
    return int(value) or None


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
