"""Every /v1 answer carries an x-request-id, refusals included, and it is the usage record's."""

from __future__ import annotations

import re
import uuid

import httpx

from usage.models import UsageRecord

HEX32 = re.compile(r"[0-9a-f]{32}")


def test_refusals_before_routing_carry_a_request_id(world):
    url = f"{world.base_url}/chat/completions"
    bad_key = httpx.post(url, headers={"Authorization": "Bearer sy-nope"}, json={}, timeout=10)
    malformed = httpx.post(
        url,
        headers={"Authorization": f"Bearer {world.api_key}", "Content-Type": "application/json"},
        content=b"{not json",
        timeout=10,
    )
    assert (bad_key.status_code, malformed.status_code) == (401, 400)
    ids = {bad_key.headers["x-request-id"], malformed.headers["x-request-id"]}
    assert all(HEX32.fullmatch(i) for i in ids)
    assert len(ids) == 2


def test_a_served_request_id_names_its_usage_record(world):
    response = httpx.post(
        f"{world.base_url}/chat/completions",
        headers={"Authorization": f"Bearer {world.api_key}"},
        json={"model": "sim-eco", "messages": [{"role": "user", "content": "Hi"}]},
        timeout=10,
    )
    assert response.status_code == 200
    world.gateway.flush_usage()
    record = UsageRecord.objects.get()
    assert record.request_id == uuid.UUID(response.headers["x-request-id"])
