"""The default quality score: bounded, rising with price tier, pinned for well-known models."""

from __future__ import annotations

import dataclasses
import functools
import itertools
from decimal import Decimal

import pytest
from django.conf import settings

from routing.catalog import (
    CatalogEntry,
    ParsedCatalog,
    default_quality,
    load_source,
    parse_pricing_map,
)
from routing.models import CatalogModel

BASE = CatalogEntry(
    pricing_provider="openai",
    key="model-x",
    model_id="model-x",
    name="model-x",
    mode="chat",
    input_price_per_mtok=Decimal(1),
    output_price_per_mtok=Decimal(4),
    cached_input_price_per_mtok=Decimal(1),
    context_window=128_000,
    max_output_tokens=8192,
    supports_tools=True,
    supports_vision=False,
    supports_json=True,
)


def priced(output_usd: str, **changes) -> CatalogEntry:
    """BASE at another price tier: output price as given, input a quarter of it."""
    output = Decimal(output_usd)
    return dataclasses.replace(
        BASE, input_price_per_mtok=output / 4, output_price_per_mtok=output, **changes
    )


@functools.cache
def snapshot() -> ParsedCatalog:
    return parse_pricing_map(load_source(settings.SWITCHYARD_CATALOG_SNAPSHOT))


def bundled(name: str) -> CatalogEntry:
    return next(e for e in snapshot().entries if e.name == name)


def test_every_bundled_model_scores_between_0_and_1():
    scores = [default_quality(e) for e in snapshot().entries]

    assert len(scores) > 1000
    assert all(0 <= s <= 1 for s in scores)
    assert len(set(scores)) > 100  # the heuristic tells models apart


def test_the_score_rises_with_the_price_tier_for_otherwise_equal_models():
    prices = ["0", "0.05", "0.1", "0.3", "1", "3", "10", "30", "100", "1000"]
    scores = [default_quality(priced(p)) for p in prices]

    assert scores == sorted(scores)
    between_bounds = scores[2:9]  # $0.10 .. $100: strictly rising
    assert all(a < b for a, b in itertools.pairwise(between_bounds))


def test_context_window_and_capabilities_add_to_the_score():
    small = default_quality(priced("4", context_window=8192))
    large = default_quality(priced("4", context_window=1_000_000))
    bare = default_quality(priced("4", supports_tools=False, supports_json=False))
    full = default_quality(priced("4", supports_vision=True))

    assert small < default_quality(BASE) < large
    assert bare < default_quality(BASE) < full


def test_family_names_nudge_the_score():
    plain = default_quality(priced("4"))

    assert default_quality(priced("4", name="model-x-mini")) == pytest.approx(plain - 0.05)
    assert default_quality(priced("4", name="anthropic/claude-x-opus")) == pytest.approx(
        plain + 0.05
    )


@pytest.mark.parametrize(
    ("name", "score"),
    [
        ("gpt-4o-mini", 0.415),
        ("gpt-4o", 0.718),
        ("o1", 0.862),
        ("anthropic/claude-haiku-4-5", 0.582),
        ("anthropic/claude-sonnet-4-5", 0.761),
        ("anthropic/claude-opus-4-5", 0.798),
        ("text-embedding-3-small", 0.1),
    ],
)
def test_well_known_models_score_as_pinned(name, score):
    assert default_quality(bundled(name)) == score


def test_stronger_models_of_a_family_score_higher():
    assert default_quality(bundled("gpt-4o")) > default_quality(bundled("gpt-4o-mini"))
    assert (
        default_quality(bundled("anthropic/claude-opus-4-5"))
        > default_quality(bundled("anthropic/claude-sonnet-4-5"))
        > default_quality(bundled("anthropic/claude-haiku-4-5"))
    )


def test_a_catalog_row_scores_like_its_entry():
    entry = bundled("gpt-4o-mini")
    row = CatalogModel(**{f.name: getattr(entry, f.name) for f in _row_fields()})

    assert default_quality(row) == default_quality(entry)


def _row_fields():
    row_fields = {f.name for f in CatalogModel._meta.get_fields()}
    return [f for f in dataclasses.fields(CatalogEntry) if f.name in row_fields]
