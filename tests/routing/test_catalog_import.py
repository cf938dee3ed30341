"""Importing the pricing map into the catalog: add, update, deprecate, skip, never half-apply."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from providers.choices import ProviderKind, WireProtocol
from routing import selectors
from routing.catalog import CatalogSourceError, client_name, parse_pricing_map
from routing.models import CatalogModel
from routing.services import import_pricing_map
from tenants import config_version
from tenants.models import AuditLog
from tests.factories import CatalogModelFactory, ProviderFactory

WRITES = ("INSERT", "UPDATE", "DELETE")


def chat(provider: str = "openai", inp: float = 1e-06, out: float = 2e-06, **extra) -> dict:
    return {
        "litellm_provider": provider,
        "mode": "chat",
        "input_cost_per_token": inp,
        "output_cost_per_token": out,
        "max_input_tokens": 128_000,
        "max_output_tokens": 16_384,
        "supports_function_calling": True,
        **extra,
    }


def source(**overrides) -> dict:
    """A small map: 3 usable OpenAI entries, 2 malformed, 1 unsupported mode, 1 Anthropic."""
    entries = {
        "sample_spec": {"mode": "one of: chat, embedding, ...", "input_cost_per_token": 0.0},
        "gpt-a": chat(inp=1.5e-07, out=6e-07, supports_vision=True),
        "gpt-b": chat(inp=2.5e-06, out=1e-05, cache_read_input_token_cost=1.25e-06),
        "text-embed": {
            "litellm_provider": "openai",
            "mode": "embedding",
            "input_cost_per_token": 2e-08,
            "max_input_tokens": 8191,
        },
        "dall-e": {"litellm_provider": "openai", "mode": "image_generation"},
        "broken-price": chat(inp="cheap"),
        "negative-price": chat(out=-1e-06),
        "claude-x": chat(provider="anthropic", inp=3e-06, out=1.5e-05),
    }
    entries.update(overrides)
    return {k: v for k, v in entries.items() if v is not None}


@pytest.fixture
def openai(db):
    return ProviderFactory(
        slug="openai", name="OpenAI", kind=ProviderKind.OPENAI, protocol=WireProtocol.OPENAI
    )


@pytest.fixture
def anthropic(db):
    return ProviderFactory(
        slug="anthropic",
        name="Anthropic",
        kind=ProviderKind.ANTHROPIC,
        protocol=WireProtocol.ANTHROPIC,
    )


def rows(provider) -> dict[str, CatalogModel]:
    return {m.model_id: m for m in selectors.catalog_models(provider=provider)}


def snapshot_of_catalog() -> list[tuple]:
    return list(CatalogModel.objects.order_by("pk").values_list())


def test_names_are_bare_for_openai_and_provider_prefixed_for_others():
    parsed = parse_pricing_map(
        {
            "gpt-4o-mini": chat(),
            "claude-haiku-4-5": chat(provider="anthropic"),
            "mistral/mistral-large": chat(provider="mistral"),
            "fireworks_ai/accounts/fireworks/models/llama": chat(provider="fireworks_ai"),
        }
    )

    names = {e.key: (e.model_id, e.name) for e in parsed.entries}
    assert names == {
        "gpt-4o-mini": ("gpt-4o-mini", "gpt-4o-mini"),
        "claude-haiku-4-5": ("claude-haiku-4-5", "anthropic/claude-haiku-4-5"),
        "mistral/mistral-large": ("mistral-large", "mistral/mistral-large"),
        "fireworks_ai/accounts/fireworks/models/llama": (
            "accounts/fireworks/models/llama",
            "fireworks_ai/accounts/fireworks/models/llama",
        ),
    }
    assert client_name(pricing_provider="openai", key="gpt-4o", model_id="gpt-4o") == "gpt-4o"


def test_two_keys_for_one_model_keep_the_provider_prefixed_one():
    parsed = parse_pricing_map(
        {
            "deepseek-chat": chat(provider="deepseek", inp=9e-06),
            "deepseek/deepseek-chat": chat(provider="deepseek", inp=2.8e-07),
        }
    )

    [entry] = parsed.entries
    assert (entry.key, entry.name) == ("deepseek/deepseek-chat", "deepseek/deepseek-chat")
    assert entry.input_price_per_mtok == Decimal("0.28")


def test_malformed_entries_are_reported_with_their_key_and_skipped():
    parsed = parse_pricing_map(
        source(**{"no-mode": {"litellm_provider": "openai"}, "not-an-object": [1, 2]})
    )

    reasons = {s.key: s.reason for s in parsed.skipped}
    assert set(reasons) == {"broken-price", "negative-price", "no-mode", "not-an-object"}
    assert "input_cost_per_token is not a number" in reasons["broken-price"]
    assert "output_cost_per_token is negative" in reasons["negative-price"]
    assert reasons["no-mode"] == "no mode"
    assert {e.key for e in parsed.entries} == {"gpt-a", "gpt-b", "text-embed", "claude-x"}


def test_first_import_adds_models_disabled_with_prices_per_million_tokens(openai):
    diff = import_pricing_map(source=source(), providers=[openai])

    assert diff.counts() == {"added": 3, "updated": 0, "deprecated": 0, "skipped": 2}
    assert {s.key for s in diff.skipped} == {"broken-price", "negative-price"}
    models = rows(openai)
    assert set(models) == {"gpt-a", "gpt-b", "text-embed"}
    a, b, embed = models["gpt-a"], models["gpt-b"], models["text-embed"]
    assert (a.input_price_per_mtok, a.output_price_per_mtok) == (Decimal("0.15"), Decimal("0.6"))
    assert a.cached_input_price_per_mtok == Decimal("0.15")  # no cache price: the input price
    assert b.cached_input_price_per_mtok == Decimal("1.25")
    assert (a.context_window, a.max_output_tokens) == (128_000, 16_384)
    assert (a.supports_tools, a.supports_vision, a.supports_json) == (True, True, False)
    assert (embed.mode, embed.input_price_per_mtok, embed.context_window) == (
        "embedding",
        Decimal("0.02"),
        8191,
    )
    assert not any(m.is_enabled or m.is_deprecated for m in models.values())
    assert 0 < a.quality_score < b.quality_score < 1


def test_enable_new_enables_the_added_models(openai):
    import_pricing_map(source=source(), providers=[openai], enable_new=True)

    assert all(m.is_enabled for m in rows(openai).values())


def test_reimport_updates_prices_deprecates_vanished_models_and_respects_overrides(openai):
    import_pricing_map(source=source(), providers=[openai])
    CatalogModel.objects.filter(model_id="gpt-b").update(
        quality_score=0.99, quality_overridden=True, is_enabled=True
    )
    changed = source(
        **{
            "gpt-a": chat(inp=2e-07, out=8e-07, supports_vision=True),
            "gpt-b": chat(inp=2.5e-06, out=1e-05, max_input_tokens=256_000),
            "text-embed": None,
            "gpt-c": chat(),
        }
    )

    diff = import_pricing_map(source=changed, providers=[openai])

    assert diff.counts() == {"added": 1, "updated": 2, "deprecated": 1, "skipped": 2}
    assert [m.model_id for m in diff.added] == ["gpt-c"]
    assert [m.model_id for m in diff.deprecated] == ["text-embed"]
    update_a = next(u for u in diff.updated if u.model_id == "gpt-a")
    assert update_a.changes["input_price_per_mtok"] == (Decimal("0.15"), Decimal("0.2"))
    assert update_a.changes["output_price_per_mtok"] == (Decimal("0.6"), Decimal("0.8"))
    models = rows(openai)
    assert models["gpt-a"].input_price_per_mtok == Decimal("0.2")
    assert models["gpt-b"].context_window == 256_000
    assert models["gpt-b"].quality_score == 0.99  # overridden by staff: left alone
    assert models["gpt-b"].is_enabled  # enabling is staff's call, never the import's
    assert models["text-embed"].is_deprecated  # vanished: kept, marked
    assert "gpt-a" in diff.summary()
    assert "0.15 -> 0.2" in diff.summary()


def test_a_model_back_in_the_source_is_no_longer_deprecated(openai):
    import_pricing_map(source=source(), providers=[openai])
    import_pricing_map(source=source(**{"gpt-a": None}), providers=[openai])
    assert rows(openai)["gpt-a"].is_deprecated

    diff = import_pricing_map(source=source(), providers=[openai])

    assert [u.model_id for u in diff.updated] == ["gpt-a"]
    assert not rows(openai)["gpt-a"].is_deprecated


def test_a_second_identical_import_writes_nothing(openai):
    import_pricing_map(source=source(), providers=[openai])
    before = snapshot_of_catalog()
    audits = AuditLog.objects.count()

    with CaptureQueriesContext(connection) as queries:
        diff = import_pricing_map(source=source(), providers=[openai])

    assert not diff.has_changes
    assert "Nothing changed" in diff.summary()
    assert not [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith(WRITES)]
    assert len(queries) <= 6
    assert snapshot_of_catalog() == before  # updated_at included
    assert AuditLog.objects.count() == audits


def test_an_import_is_audited_once_and_bumps_the_config_version(
    openai, django_capture_on_commit_callbacks
):
    version = config_version.read_sync()

    with django_capture_on_commit_callbacks(execute=True):
        import_pricing_map(source=source(), providers=[openai])

    [entry] = AuditLog.objects.filter(action="catalog.imported")
    assert entry.changes == {
        "added": 3,
        "updated": 0,
        "deprecated": 0,
        "skipped": 2,
        "providers": ["openai"],
    }
    assert config_version.read_sync() != version


@pytest.mark.parametrize(
    "bad",
    [
        [{"gpt-a": chat()}],
        "not a path to anything.json",
        {},
        {"sample_spec": {}},
        {"a": chat(inp="x"), "b": chat(out=-1.0), "c": chat()},
    ],
    ids=["a-list", "a-missing-file", "empty", "only-the-spec", "mostly-malformed"],
)
def test_a_malformed_source_raises_and_changes_nothing(openai, bad):
    import_pricing_map(source=source(), providers=[openai])
    before = snapshot_of_catalog()
    audits = AuditLog.objects.count()

    with pytest.raises(CatalogSourceError):
        import_pricing_map(source=bad, providers=[openai])

    assert snapshot_of_catalog() == before
    assert AuditLog.objects.count() == audits


def test_a_file_that_is_not_json_raises(openai, tmp_path):
    path = tmp_path / "prices.json"
    path.write_text("<html>rate limited</html>")

    with pytest.raises(CatalogSourceError, match="not valid JSON"):
        import_pricing_map(source=path, providers=[openai])
    assert not CatalogModel.objects.exists()


def test_a_provider_missing_from_the_source_is_left_alone(openai, anthropic):
    CatalogModelFactory(provider=anthropic, model_id="claude-x")
    only_openai = source(**{"claude-x": None})

    diff = import_pricing_map(source=only_openai, providers=[openai, anthropic])

    assert diff.unmatched_providers == ("anthropic",)
    assert not rows(anthropic)["claude-x"].is_deprecated


def test_default_providers_are_platform_ones_with_pricing_data_not_opted_out(openai, anthropic):
    ProviderFactory(slug="sim", kind=ProviderKind.SIMULATOR)  # no pricing data
    anthropic.options = {"catalog_sync": False}
    anthropic.save()

    diff = import_pricing_map(source=source())

    assert diff.providers == ("openai",)
    assert not rows(anthropic)


def test_the_bundled_snapshot_has_well_known_models_at_their_prices(openai, anthropic):
    started = time.perf_counter()
    diff = import_pricing_map(
        source=settings.SWITCHYARD_CATALOG_SNAPSHOT, providers=[openai, anthropic]
    )
    elapsed = time.perf_counter() - started

    assert len(diff.added) > 100
    assert elapsed < 5
    mini = selectors.get_catalog_model(provider=openai, model_id="gpt-4o-mini")
    assert mini.name == "gpt-4o-mini"
    assert (
        mini.input_price_per_mtok,
        mini.output_price_per_mtok,
        mini.cached_input_price_per_mtok,
    ) == (Decimal("0.15"), Decimal("0.60"), Decimal("0.075"))
    assert (mini.context_window, mini.max_output_tokens) == (128_000, 16_384)
    assert mini.supports_tools
    assert mini.supports_vision
    assert mini.supports_json
    gpt4o = selectors.get_catalog_model(provider=openai, model_id="gpt-4o")
    assert (gpt4o.input_price_per_mtok, gpt4o.output_price_per_mtok) == (Decimal("2.5"), 10)
    embed = selectors.get_catalog_model(provider=openai, model_id="text-embedding-3-small")
    assert (embed.mode, embed.input_price_per_mtok) == ("embedding", Decimal("0.02"))
    sonnet = selectors.get_catalog_model(provider=anthropic, model_id="claude-sonnet-4-5")
    assert sonnet.name == "anthropic/claude-sonnet-4-5"
    assert (
        sonnet.input_price_per_mtok,
        sonnet.output_price_per_mtok,
        sonnet.cached_input_price_per_mtok,
    ) == (Decimal(3), Decimal(15), Decimal("0.3"))
    assert selectors.platform_catalog().filter(provider=anthropic).count() == 22

    again = import_pricing_map(
        source=settings.SWITCHYARD_CATALOG_SNAPSHOT, providers=[openai, anthropic]
    )
    assert not again.has_changes


def test_the_command_prints_the_diff_and_refuses_a_malformed_source(openai, tmp_path):
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(source()))
    out = StringIO()

    call_command("import_catalog", str(path), "--enable-new", "--provider", "openai", stdout=out)

    assert "3 added" in out.getvalue()
    assert all(m.is_enabled for m in rows(openai).values())
    path.write_text(json.dumps([1, 2, 3]))
    with pytest.raises(CommandError, match="Nothing imported"):
        call_command("import_catalog", str(path))
    with pytest.raises(CommandError, match="No platform provider"):
        call_command("import_catalog", str(path), "--provider", "nope")
