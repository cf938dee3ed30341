"""Catalog sync: the pricing map and each provider's models list, applied all or nothing.

Sources are local: a pricing-map file (SWITCHYARD_CATALOG_SNAPSHOT), the simulator's models
list (OpenAI and Anthropic shapes), and a small HTTP server for OpenRouter's format and a
pricing-map URL.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from providers.choices import KeyScope, ProviderKind, WireProtocol
from routing import catalog_sources, services, tasks
from routing.catalog_sources import CatalogSourceUnavailable, presence
from routing.models import CatalogModel, CatalogPriceChange, CatalogSyncRun
from routing.services import sync_catalog
from tenants import config_version
from tenants.models import AuditLog
from tests.factories import CatalogModelFactory, ProviderFactory, ProviderKeyFactory

WRITES = ("INSERT", "UPDATE", "DELETE")
CATALOG_TABLES = ("routing_catalogmodel", "routing_catalogpricechange")
PLATFORM_KEY = "sk-sim-platform-key-0001"


def chat(provider: str = "openai", inp: float = 1e-06, out: float = 4e-06, **extra) -> dict:
    return {
        "litellm_provider": provider,
        "mode": "chat",
        "input_cost_per_token": inp,
        "output_cost_per_token": out,
        "max_input_tokens": 128_000,
        "max_output_tokens": 16_384,
        **extra,
    }


def pricing_map(**overrides) -> dict:
    """The simulator lists sim-eco, sim-balanced, sim-precision, sim-embed."""
    entries = {
        "sample_spec": {"mode": "chat", "input_cost_per_token": 0.0},
        "sim-eco": chat(inp=1e-07, out=4e-07),
        "sim-balanced": chat(inp=1e-06, out=4e-06, cache_read_input_token_cost=5e-07),
        # The map knows it, but not as a chat or embedding model: never added.
        "sim-embed": {"litellm_provider": "openai", "mode": "audio_transcription"},
        "gpt-retired": chat(),  # priced, but the provider no longer lists it
        "broken-price": chat(inp="cheap"),
        "sim-eco-anthropic": chat(provider="anthropic"),
        "anthropic/sim-precision": chat(provider="anthropic", inp=3e-06, out=1.5e-05),
    }
    entries.update(overrides)
    return {k: v for k, v in entries.items() if v is not None}


@pytest.fixture
def snapshot(db, tmp_path, settings):
    """Write the pricing map the sync reads (the bundled-file path)."""
    path = tmp_path / "prices.json"
    settings.SWITCHYARD_CATALOG_SNAPSHOT = str(path)
    settings.SWITCHYARD_CATALOG_SOURCE_URL = ""

    def write(data) -> None:
        path.write_text(json.dumps(data))

    write(pricing_map())
    return write


def platform_provider(slug: str, kind: str, protocol: str, base_url: str, *, key: bool = True):
    provider = ProviderFactory(slug=slug, name=slug.title(), kind=kind, protocol=protocol)
    provider.base_url = base_url
    provider.save()
    if key:
        ProviderKeyFactory(
            provider=provider, tenant=None, scope=KeyScope.PLATFORM, secret=PLATFORM_KEY
        )
    return provider


@pytest.fixture
def openai(db, sim):
    return platform_provider("openai", ProviderKind.OPENAI, WireProtocol.OPENAI, f"{sim.url}/v1")


@pytest.fixture
def anthropic(db, sim):
    return platform_provider(
        "anthropic", ProviderKind.ANTHROPIC, WireProtocol.ANTHROPIC, f"{sim.url}/v1"
    )


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


class JSONServer:
    """A local HTTP server answering GET `path` with a set status and body."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, bytes]] = {}
        routes = self.routes

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = routes.get(self.path.split("?")[0], (404, b"{}"))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def serve(self, path: str, data, status: int = 200) -> None:
        body = data if isinstance(data, bytes) else json.dumps(data).encode()
        self.routes[path] = (status, body)


@pytest.fixture
def http_server() -> Iterator[JSONServer]:
    server = JSONServer()
    yield server
    server.server.shutdown()
    server.server.server_close()


def catalog_rows() -> list[tuple]:
    return list(CatalogModel.objects.order_by("pk").values_list())


def models_of(provider) -> dict[str, CatalogModel]:
    return {m.model_id: m for m in CatalogModel.objects.filter(provider=provider)}


def catalog_writes(queries) -> list[str]:
    return [
        q["sql"]
        for q in queries
        if q["sql"].lstrip().upper().startswith(WRITES)
        and any(table in q["sql"] for table in CATALOG_TABLES)
    ]


# --- models lists: new, changed, vanished -------------------------------------------------------


def test_listed_models_arrive_disabled_priced_from_the_map_or_at_zero_with_a_note(snapshot, openai):
    run = sync_catalog()

    assert run.status == CatalogSyncRun.Status.OK, run.diff
    models = models_of(openai)
    # sim-embed is an audio model in the map, gpt-retired is not listed: neither is added.
    assert set(models) == {"sim-eco", "sim-balanced", "sim-precision"}
    assert not any(m.is_enabled or m.is_deprecated for m in models.values())
    eco = models["sim-eco"]
    assert (eco.input_price_per_mtok, eco.output_price_per_mtok) == (Decimal("0.1"), Decimal("0.4"))
    precision = models["sim-precision"]
    assert (precision.input_price_per_mtok, precision.output_price_per_mtok) == (0, 0)
    assert "+ openai sim-precision (not in the pricing map: zero prices" in run.diff
    assert (run.added, run.updated, run.deprecated) == (3, 0, 0)


def test_a_changed_price_is_applied_and_kept_as_history(snapshot, openai):
    balanced = CatalogModelFactory(
        provider=openai,
        model_id="sim-balanced",
        input_price_per_mtok=Decimal("2"),
        output_price_per_mtok=Decimal("8"),
        cached_input_price_per_mtok=Decimal("1"),
        is_enabled=True,
    )

    run = sync_catalog()

    balanced.refresh_from_db()
    assert (balanced.input_price_per_mtok, balanced.output_price_per_mtok) == (1, 4)
    assert balanced.is_enabled  # enabling is staff's call, never the sync's
    [change] = CatalogPriceChange.objects.filter(catalog_model=balanced)
    assert change.sync_run == run
    assert (change.old_input_price_per_mtok, change.new_input_price_per_mtok) == (2, 1)
    assert (change.old_output_price_per_mtok, change.new_output_price_per_mtok) == (8, 4)
    assert (change.old_cached_input_price_per_mtok, change.new_cached_input_price_per_mtok) == (
        1,
        Decimal("0.5"),
    )
    assert "~ openai sim-balanced: input_price_per_mtok 2 -> 1" in run.diff


def test_a_model_the_provider_no_longer_lists_is_deprecated_not_deleted(snapshot, openai):
    gone = CatalogModelFactory(provider=openai, model_id="gpt-retired", is_enabled=True)
    staff_made = CatalogModelFactory(provider=openai, model_id="my-fine-tune", is_enabled=False)

    run = sync_catalog()

    gone.refresh_from_db()
    staff_made.refresh_from_db()
    assert gone.is_deprecated
    assert gone.is_enabled  # kept, and enabled-or-not as it was
    assert staff_made.is_deprecated
    assert not staff_made.is_enabled
    assert run.deprecated == 2
    assert "- openai gpt-retired" in run.diff


def test_a_deprecated_model_listed_again_is_revived(snapshot, openai):
    precision = CatalogModelFactory(provider=openai, model_id="sim-precision", is_deprecated=True)
    updated_at = precision.updated_at

    sync_catalog()

    precision.refresh_from_db()
    assert not precision.is_deprecated
    assert precision.input_price_per_mtok == Decimal("1.00")  # no source prices it: kept
    assert precision.updated_at > updated_at


def test_aliases_of_listed_snapshots_count_as_listed():
    served = presence(
        ["claude-sonnet-4-5-20250929", "gpt-4o-2024-08-06", "mistral-large-2411", "llama3:latest"]
    )

    assert served("claude-sonnet-4-5-20250929")
    assert served("claude-sonnet-4-5")
    assert served("claude-sonnet-4-5-latest")
    assert served("gpt-4o")
    assert served("mistral-large-latest")
    assert served("llama3")
    assert not served("claude-opus-4")
    assert not served("gpt-4o-mini")


def test_anthropic_models_list_is_read_with_its_protocol(snapshot, anthropic, sim):
    run = sync_catalog()

    assert run.status == CatalogSyncRun.Status.OK, run.diff
    models = models_of(anthropic)
    assert set(models) == {"sim-eco", "sim-balanced", "sim-precision", "sim-embed"}
    precision = models["sim-precision"]
    assert precision.name == "anthropic/sim-precision"
    assert (precision.input_price_per_mtok, precision.output_price_per_mtok) == (3, 15)
    assert models["sim-embed"].mode == "embedding"  # a guess from the name, staff can fix it
    [request] = [e for e in sim.log if e["path"].endswith("/models")]
    assert request["protocol"] == "anthropic"
    assert request["api_key"] == PLATFORM_KEY


def test_a_provider_without_a_platform_key_gets_the_pricing_map_alone(snapshot, sim):
    openai = platform_provider(
        "openai", ProviderKind.OPENAI, WireProtocol.OPENAI, f"{sim.url}/v1", key=False
    )

    run = sync_catalog()

    assert set(models_of(openai)) == {"sim-eco", "sim-balanced", "gpt-retired"}
    assert "openai: models list not read (no platform key)" in run.diff
    assert not [e for e in sim.log if e["path"].endswith("/models")]


def test_providers_opted_out_of_catalog_sync_are_left_alone(snapshot, openai):
    openai.options = {"catalog_sync": False}
    openai.save()

    run = sync_catalog()

    assert not CatalogModel.objects.exists()
    assert run.status == CatalogSyncRun.Status.OK
    assert "Catalog import for no provider" in run.diff


# --- malformed entries and sources --------------------------------------------------------------


def test_malformed_entries_are_skipped_and_reported(snapshot, openai):
    run = sync_catalog()

    assert run.skipped == 1
    assert "! broken-price: input_cost_per_token is not a number" in run.diff
    assert not CatalogModel.objects.filter(model_id="broken-price").exists()


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ([1, 2, 3], "must hold a JSON object"),
        ("<html>rate limited</html>", "not valid JSON"),
        ({"a": chat(inp="x"), "b": chat(out=-1.0), "c": chat()}, "2 of 3 entries are malformed"),
        ({}, "no entries"),
    ],
    ids=["a-list", "not-json", "mostly-malformed", "empty"],
)
def test_a_malformed_pricing_map_changes_nothing_and_the_run_says_why(
    snapshot, openai, tmp_path, settings, sim, source, reason
):
    sync_catalog()
    CatalogModelFactory(provider=openai, model_id="gpt-retired")
    before = catalog_rows()
    history = CatalogPriceChange.objects.count()
    if isinstance(source, str):
        (tmp_path / "prices.json").write_text(source)
    else:
        snapshot(source)
    sim.clear_log()

    run = sync_catalog()

    assert run.status == CatalogSyncRun.Status.FAILED
    assert reason in run.error
    assert run.diff.startswith("Nothing changed:")
    assert (run.added, run.updated, run.deprecated) == (0, 0, 0)
    assert catalog_rows() == before
    assert CatalogPriceChange.objects.count() == history
    assert not sim.log  # no provider was asked once the map was refused


def test_a_failing_models_list_leaves_that_provider_unchanged_and_the_run_partial(
    snapshot, anthropic, sim
):
    openai = platform_provider(
        "openai", ProviderKind.OPENAI, WireProtocol.OPENAI, f"{sim.url}/fault/500/v1"
    )
    gone = CatalogModelFactory(provider=openai, model_id="gpt-retired")
    balanced = CatalogModelFactory(
        provider=openai, model_id="sim-balanced", input_price_per_mtok=Decimal(2)
    )
    before = list(CatalogModel.objects.filter(provider=openai).order_by("pk").values_list())

    run = sync_catalog()

    assert run.status == CatalogSyncRun.Status.PARTIAL
    assert "openai: the models list answered HTTP 500" in run.error
    assert PLATFORM_KEY not in run.error + run.diff
    assert "x openai: the models list answered HTTP 500" in run.diff
    after = list(CatalogModel.objects.filter(provider=openai).order_by("pk").values_list())
    assert after == before  # not deprecated, not repriced, nothing added
    assert not gone.price_changes.exists()
    assert not balanced.price_changes.exists()
    assert set(models_of(anthropic)) == {"sim-eco", "sim-balanced", "sim-precision", "sim-embed"}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"data": "nope"}, "no `data` list"),
        ({"data": []}, "the models list is empty"),
        ({"data": [{"id": "a"}, {"name": "b"}, 3]}, "2 of 3 items of the models list"),
        (b"<html>login</html>", "not JSON"),
    ],
    ids=["data-not-a-list", "empty", "mostly-malformed", "html"],
)
def test_a_malformed_models_list_changes_nothing_for_that_provider(
    snapshot, http_server, body, reason
):
    custom = platform_provider(
        "custom", ProviderKind.CUSTOM, WireProtocol.OPENAI, f"{http_server.url}/v1"
    )
    kept = CatalogModelFactory(provider=custom, model_id="only-model")
    http_server.serve("/v1/models", body)

    run = sync_catalog()

    assert run.status == CatalogSyncRun.Status.PARTIAL
    assert reason in run.error
    kept.refresh_from_db()
    assert not kept.is_deprecated
    assert list(models_of(custom)) == ["only-model"]


def test_a_failure_while_applying_rolls_the_whole_run_back_and_records_it(
    snapshot, openai, monkeypatch
):
    CatalogModelFactory(provider=openai, model_id="sim-balanced", input_price_per_mtok=2)
    before = catalog_rows()

    def broken(self, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(services._SyncPlan, "price_changes", broken)
    with pytest.raises(RuntimeError):
        sync_catalog()

    assert catalog_rows() == before  # the rows written before the failure are rolled back
    run = CatalogSyncRun.objects.get()
    assert run.status == CatalogSyncRun.Status.FAILED
    assert "unexpected error (RuntimeError): disk full" in run.error
    assert not AuditLog.objects.filter(action="catalog.imported").exists()


# --- idempotency, audit, config version ---------------------------------------------------------


def test_a_second_run_over_the_same_sources_writes_no_catalog_row(snapshot, openai, anthropic):
    CatalogModelFactory(provider=openai, model_id="sim-balanced", input_price_per_mtok=2)
    CatalogModelFactory(provider=openai, model_id="gpt-retired")
    first = sync_catalog()
    assert (first.added, first.updated, first.deprecated) == (6, 1, 1)
    before = catalog_rows()
    history = CatalogPriceChange.objects.count()

    with CaptureQueriesContext(connection) as queries:
        second = sync_catalog()

    assert second.status == CatalogSyncRun.Status.OK
    assert (second.added, second.updated, second.deprecated) == (0, 0, 0)
    assert "Nothing changed." in second.diff
    assert not catalog_writes(queries)
    assert catalog_rows() == before  # updated_at included
    assert CatalogPriceChange.objects.count() == history
    assert CatalogSyncRun.objects.count() == 2


def test_a_run_is_audited_once_and_bumps_the_config_version_only_when_it_changed_something(
    snapshot, openai, django_capture_on_commit_callbacks
):
    version = config_version.read_sync()

    with django_capture_on_commit_callbacks(execute=True):
        run = sync_catalog()

    [entry] = AuditLog.objects.filter(action="catalog.imported")
    assert (entry.target_type, entry.target_id) == ("routing.catalogsyncrun", str(run.pk))
    assert entry.changes["added"] == 3
    assert entry.changes["status"] == "ok"
    bumped = config_version.read_sync()
    assert bumped != version

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        sync_catalog()

    assert not callbacks
    assert config_version.read_sync() == bumped


def test_the_run_is_logged_with_its_diff(snapshot, openai, caplog):
    caplog.set_level("INFO", logger="routing.services")

    run = sync_catalog()

    [record] = [r for r in caplog.records if r.getMessage().startswith("catalog.synced")]
    assert (record.run_id, record.status, record.added) == (run.pk, "ok", 3)
    assert "+ openai sim-eco" in record.getMessage()


# --- OpenRouter's models format -----------------------------------------------------------------


def openrouter_item(model_id: str, prompt: str = "0.0000025", completion: str = "0.00001", **kw):
    return {
        "id": model_id,
        "name": model_id,
        "context_length": 128_000,
        "pricing": {"prompt": prompt, "completion": completion, "request": "0"},
        "top_provider": {"context_length": 128_000, "max_completion_tokens": 16_384},
        "architecture": {"input_modalities": ["text", "image"], "output_modalities": ["text"]},
        "supported_parameters": ["tools", "structured_outputs", "temperature"],
        **kw,
    }


@pytest.fixture
def openrouter(db, http_server):
    # OpenRouter's list is public: no platform key needed.
    provider = platform_provider(
        "openrouter",
        ProviderKind.OPENROUTER,
        WireProtocol.OPENAI,
        f"{http_server.url}/api/v1",
        key=False,
    )
    http_server.serve(
        "/api/v1/models",
        {
            "data": [
                openrouter_item("openai/gpt-4o"),
                openrouter_item("meta-llama/llama-3-8b", "0.00000005", "0.0000001"),
                openrouter_item(
                    "mistralai/small",
                    "0",
                    "0",
                    supported_parameters=["temperature"],
                    architecture={"input_modalities": ["text"]},
                    top_provider={"max_completion_tokens": None},
                    context_length=32_000,
                ),
                openrouter_item("openrouter/auto", "-1", "-1"),
            ]
        },
    )
    return provider


def test_openrouter_models_are_priced_from_its_own_list(snapshot, openrouter):
    run = sync_catalog()

    assert run.status == CatalogSyncRun.Status.OK, run.diff
    models = models_of(openrouter)
    assert set(models) == {"openai/gpt-4o", "meta-llama/llama-3-8b", "mistralai/small"}
    gpt = models["openai/gpt-4o"]
    assert gpt.name == "openrouter/openai/gpt-4o"
    assert (gpt.input_price_per_mtok, gpt.output_price_per_mtok) == (Decimal("2.5"), 10)
    assert (gpt.context_window, gpt.max_output_tokens) == (128_000, 16_384)
    assert (gpt.supports_tools, gpt.supports_vision, gpt.supports_json) == (True, True, True)
    small = models["mistralai/small"]
    assert (small.context_window, small.max_output_tokens) == (32_000, 4096)
    assert (small.supports_tools, small.supports_vision, small.supports_json) == (False,) * 3
    assert models["meta-llama/llama-3-8b"].input_price_per_mtok == Decimal("0.05")
    # A variable-priced router is reported, never added at a made-up price.
    assert "! openrouter openrouter/auto: pricing.prompt is negative" in run.diff
    assert run.skipped == 1  # the map's broken OpenAI entry is not this provider's


def test_an_openrouter_price_change_is_applied_and_kept_as_history(
    snapshot, openrouter, http_server
):
    sync_catalog()
    http_server.serve(
        "/api/v1/models",
        {"data": [openrouter_item("openai/gpt-4o", "0.000002"), openrouter_item("x/y")]},
    )

    run = sync_catalog()

    models = models_of(openrouter)
    assert models["openai/gpt-4o"].input_price_per_mtok == 2
    [change] = CatalogPriceChange.objects.all()
    assert (change.old_input_price_per_mtok, change.new_input_price_per_mtok) == (
        Decimal("2.5"),
        2,
    )
    assert models["meta-llama/llama-3-8b"].is_deprecated
    assert (run.added, run.updated, run.deprecated) == (1, 1, 2)


# --- the pricing map from a URL -----------------------------------------------------------------


def test_the_pricing_map_is_read_from_the_configured_url(snapshot, openai, http_server, settings):
    http_server.serve("/prices.json", pricing_map(**{"sim-eco": chat(inp=2e-07, out=8e-07)}))
    settings.SWITCHYARD_CATALOG_SOURCE_URL = f"{http_server.url}/prices.json"

    run = sync_catalog()

    assert run.status == CatalogSyncRun.Status.OK
    assert f"pricing map {http_server.url}/prices.json" in run.source
    assert models_of(openai)["sim-eco"].input_price_per_mtok == Decimal("0.2")


def test_a_pricing_map_url_that_is_down_fails_the_run_for_a_retry(
    snapshot, openai, http_server, settings
):
    http_server.serve("/prices.json", {"error": "busy"}, status=503)
    settings.SWITCHYARD_CATALOG_SOURCE_URL = f"{http_server.url}/prices.json"

    with pytest.raises(CatalogSourceUnavailable) as raised:
        sync_catalog()

    run = raised.value.run
    assert run.status == CatalogSyncRun.Status.FAILED
    assert "answered HTTP 503" in run.error
    assert not CatalogModel.objects.exists()


def test_a_pricing_map_url_that_is_wrong_or_too_large_fails_without_retry(
    snapshot, openai, http_server, settings, monkeypatch
):
    settings.SWITCHYARD_CATALOG_SOURCE_URL = f"{http_server.url}/missing.json"

    assert "answered HTTP 404" in sync_catalog().error

    http_server.serve("/prices.json", pricing_map())
    settings.SWITCHYARD_CATALOG_SOURCE_URL = f"{http_server.url}/prices.json"
    monkeypatch.setattr(catalog_sources, "MAX_PRICING_MAP_BYTES", 100)

    run = sync_catalog()

    assert run.status == CatalogSyncRun.Status.FAILED
    assert "larger than 100 bytes" in run.error
    assert not CatalogModel.objects.exists()


# --- the task body, the command, the admin ------------------------------------------------------


def test_the_task_runs_the_sync_and_retries_only_a_map_that_may_come_back(
    snapshot, openai, http_server, settings
):
    assert tasks.sync_catalog.name == "routing.sync_catalog"
    assert tasks.sync_catalog.acks_late
    assert tasks.sync_catalog.autoretry_for == (CatalogSourceUnavailable,)

    result = tasks.sync_catalog()

    assert result == {"run": CatalogSyncRun.objects.get().pk, "status": "ok"}

    http_server.serve("/prices.json", b"", status=502)
    settings.SWITCHYARD_CATALOG_SOURCE_URL = f"{http_server.url}/prices.json"
    with pytest.raises(CatalogSourceUnavailable):
        tasks.sync_catalog()  # called directly, a retry re-raises


def test_the_command_prints_the_diff_and_fails_on_a_malformed_source(snapshot, openai):
    out = StringIO()

    call_command("sync_catalog", stdout=out)

    assert "Catalog sync #" in out.getvalue()
    assert "+ openai sim-eco" in out.getvalue()
    snapshot([1, 2])
    with pytest.raises(CommandError, match="Nothing changed"):
        call_command("sync_catalog", stdout=StringIO())


def test_sync_catalog_now_runs_the_full_sync(snapshot, openai, staff_client, staff_user):
    response = staff_client.post(reverse("admin:routing_catalogmodel_sync"), follow=True)

    assert response.status_code == 200
    run = CatalogSyncRun.objects.get()
    assert run.triggered_by == staff_user.get_username()
    assert set(models_of(openai)) == {"sim-eco", "sim-balanced", "sim-precision"}
    [message] = response.context["messages"]
    assert f"Catalog sync #{run.pk}" in str(message)
    assert message.level_tag == "success"


def test_sync_catalog_now_reports_a_partial_run_as_a_warning(snapshot, staff_client, sim):
    platform_provider("down", ProviderKind.CUSTOM, WireProtocol.OPENAI, f"{sim.url}/fault/503/v1")

    response = staff_client.post(reverse("admin:routing_catalogmodel_sync"), follow=True)

    [message] = response.context["messages"]
    assert message.level_tag == "warning"
    assert "down: the models list answered HTTP 503" in str(message)


def test_sync_runs_and_price_history_are_visible_read_only_in_the_admin(
    snapshot, openai, staff_client, django_assert_max_num_queries
):
    for price in ("3", "2"):
        CatalogModel.objects.filter(model_id="sim-balanced").update(input_price_per_mtok=price)
        sync_catalog()
    run = CatalogSyncRun.objects.last()  # the oldest: the one that added the models
    balanced = CatalogModel.objects.get(model_id="sim-balanced")
    CatalogModel.objects.filter(pk=balanced.pk).update(input_price_per_mtok=5)
    sync_catalog()

    with django_assert_max_num_queries(12):
        runs = staff_client.get(reverse("admin:routing_catalogsyncrun_changelist"))
    with django_assert_max_num_queries(12):
        changes = staff_client.get(reverse("admin:routing_catalogpricechange_changelist"))
    detail = staff_client.get(reverse("admin:routing_catalogsyncrun_change", args=[run.pk]))
    model_page = staff_client.get(reverse("admin:routing_catalogmodel_change", args=[balanced.pk]))

    assert runs.status_code == changes.status_code == detail.status_code == 200
    assert list(runs.context["cl"].result_list) == list(CatalogSyncRun.objects.all())
    assert runs.context["cl"].result_list[0].started_at >= run.started_at  # newest first
    assert "input 5 -&gt; 1" in changes.content.decode()
    assert "+ openai sim-eco" in detail.content.decode()
    assert "Price history" in model_page.content.decode()
    assert "input 5 -&gt; 1" in model_page.content.decode()
    assert not runs.context["has_add_permission"]
    post = staff_client.post(reverse("admin:routing_catalogsyncrun_delete", args=[run.pk]))
    assert post.status_code == 403
