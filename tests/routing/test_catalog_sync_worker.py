"""The daily catalog sync runs on a real Celery worker and records its run."""

from __future__ import annotations

import json
import time
from decimal import Decimal

from providers.choices import KeyScope, ProviderKind, WireProtocol
from routing import tasks
from routing.models import CatalogModel, CatalogSyncRun
from tests.factories import ProviderFactory, ProviderKeyFactory

RUN_DEADLINE_SECONDS = 30


def test_a_worker_runs_the_sync_task_and_records_the_run(celery_worker_process, sim, tmp_path):
    prices = tmp_path / "prices.json"
    prices.write_text(
        json.dumps(
            {
                "sim-eco": {
                    "litellm_provider": "openai",
                    "mode": "chat",
                    "input_cost_per_token": 1e-07,
                    "output_cost_per_token": 4e-07,
                }
            }
        )
    )
    provider = ProviderFactory(
        slug="openai", kind=ProviderKind.OPENAI, protocol=WireProtocol.OPENAI
    )
    provider.base_url = f"{sim.url}/v1"
    provider.save()
    ProviderKeyFactory(provider=provider, tenant=None, scope=KeyScope.PLATFORM)
    # The worker is its own process: it reads the pricing map the environment names.
    celery_worker_process(name="catalog", SWITCHYARD_CATALOG_SNAPSHOT=str(prices))

    tasks.sync_catalog.delay()

    deadline = time.monotonic() + RUN_DEADLINE_SECONDS
    while not (run := CatalogSyncRun.objects.first()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert run is not None, "the worker recorded no sync run"
    assert run.status == CatalogSyncRun.Status.OK, run.diff
    assert run.triggered_by == "system"
    models = {m.model_id: m for m in CatalogModel.objects.filter(provider=provider)}
    assert set(models) == {"sim-eco", "sim-balanced", "sim-precision", "sim-embed"}
    assert models["sim-eco"].output_price_per_mtok == Decimal("0.4")
    assert not any(m.is_enabled for m in models.values())
    assert any(entry["path"].endswith("/v1/models") for entry in sim.log)
