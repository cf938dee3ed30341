"""A deprecated model (gone upstream) is kept in the catalog but never routed to."""

from __future__ import annotations

import httpx

from routing.models import CatalogModel


def test_a_deprecated_model_is_not_routed_explicitly_or_by_alias(world):
    CatalogModel.objects.filter(pk=world.models["sim-eco"].pk).update(is_deprecated=True)
    world.gateway.sync()

    explicit = httpx.post(
        f"{world.base_url}/chat/completions",
        headers=world.headers(),
        json={"model": "sim-eco", "messages": [{"role": "user", "content": "hi"}]},
    )
    alias = httpx.post(
        f"{world.base_url}/chat/completions",
        headers=world.headers(),
        json={"model": "balanced", "messages": [{"role": "user", "content": "hi"}]},
    )

    assert explicit.status_code == 404
    assert alias.status_code == 200
    assert alias.headers["x-switchyard-model"] != "sim-eco"
    assert CatalogModel.objects.filter(name="sim-eco").exists()
