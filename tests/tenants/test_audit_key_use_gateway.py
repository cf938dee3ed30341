"""The router's use of a provider key reaches the audit log, sampled: one entry an hour."""

from __future__ import annotations

import httpx

from providers.models import ProviderKey
from tenants.audit import KEY_USED
from tenants.models import AuditLog
from tests.factories import ProviderKeyFactory

BODY = {"model": "sim-eco", "messages": [{"role": "user", "content": "Hello"}]}


def test_requests_on_a_tenant_key_leave_one_sampled_audit_entry(world):
    key: ProviderKey = ProviderKeyFactory(
        provider=world.openai, tenant=world.tenant, secret="sim-tenant-key-0007"
    )
    world.gateway.sync()
    headers = {"Authorization": f"Bearer {world.api_key}"}
    for _ in range(2):  # two batches: the second is within the hour
        for _ in range(3):
            response = httpx.post(
                f"{world.base_url}/chat/completions", json=BODY, headers=headers, timeout=10
            )
            assert response.status_code == 200, response.text
        world.gateway.flush_usage()

    [entry] = AuditLog.objects.filter(action=KEY_USED, target_id=str(key.pk))
    assert entry.tenant_id == world.tenant.id
    assert entry.actor_label == "router"
    assert 1 <= entry.changes["uses_in_batch"] <= 3  # the writer may flush mid-way
    assert "sim-tenant-key-0007" not in str(entry.changes) + entry.target_repr
    key.refresh_from_db()
    assert key.last_used_at is not None
