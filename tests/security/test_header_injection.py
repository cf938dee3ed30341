"""Catalog names are untrusted (catalog sync): one with a line break must not break, or
inject into, the response whose upstream call was already paid for."""

from __future__ import annotations

import httpx

from tests.factories import CatalogModelFactory
from usage.choices import Outcome
from usage.models import UsageRecord


def test_a_model_name_with_a_line_break_is_served_with_a_clean_header(world):
    CatalogModelFactory(
        provider=world.openai,
        model_id="sim-evil",
        name="evil\r\nx-injected: 1",
        input_price_per_mtok=1,
        output_price_per_mtok=1,
    )
    world.gateway.sync()

    response = httpx.post(
        f"{world.base_url}/chat/completions",
        headers={"Authorization": f"Bearer {world.api_key}"},
        json={"model": "sim-evil", "messages": [{"role": "user", "content": "Hi"}]},
        timeout=10,
    )

    assert response.status_code == 200, response.text
    assert response.headers["x-switchyard-model"] == "evilx-injected: 1"
    assert "x-injected" not in response.headers
    world.gateway.flush_usage()
    assert UsageRecord.objects.filter(outcome=Outcome.SUCCESS).count() == 1
