"""Credits: platform usage draws its cost, BYOK usage the plan's fee; the ledger adds up."""

from __future__ import annotations

from decimal import Decimal

import httpx
from django.db.models import Sum

from providers.choices import KeyScope
from tests.factories import EndUserFactory, ProviderKeyFactory
from tests.usage.limits_helpers import BODY, fire, run, unthrottled
from usage.choices import KeySource
from usage.models import CreditLedgerEntry, UsageRecord
from usage.money import quantize_usd
from usage.selectors import credit_balance
from usage.services import grant_credits


def test_1000_mixed_platform_and_byok_requests_debit_credits_to_the_cent(world):
    unthrottled(world)
    initial = credit_balance(tenant_id=world.tenant.pk)
    for i in range(5):
        user = EndUserFactory(tenant=world.tenant, external_id=f"byok-{i}")
        ProviderKeyFactory(
            provider=world.openai,
            tenant=world.tenant,
            end_user=user,
            scope=KeyScope.USER,
            secret=f"sim-byok-user-{i:04d}",
        )
    world.gateway.sync()
    bodies = [{**BODY, "user": f"byok-{i % 5}"} if i % 2 else BODY for i in range(1000)]

    statuses = [
        s for s, _, _ in run(fire(world.gateway.url, world.api_key, bodies, concurrency=50))
    ]

    assert statuses.count(200) == 1000
    world.gateway.flush_usage()
    records = UsageRecord.objects.filter(tenant=world.tenant)
    assert records.count() == 1000
    platform = records.filter(key_source=KeySource.PLATFORM).aggregate(t=Sum("cost_usd"))["t"]
    byok = [r.cost_usd for r in records.filter(key_source=KeySource.USER)]
    assert len(byok) == 500
    expected_debits = platform + sum(quantize_usd(c * Decimal("0.10")) for c in byok)
    assert credit_balance(tenant_id=world.tenant.pk) == initial - expected_debits
    assert CreditLedgerEntry.objects.filter(tenant=world.tenant, kind="platform_fee").exists()


def test_insufficient_credits_is_402_and_a_grant_lets_requests_through_at_once(world):
    CreditLedgerEntry.objects.create(
        tenant=world.tenant, kind="adjustment", amount_usd=Decimal(-100)
    )
    world.gateway.sync()

    refused = httpx.post(f"{world.base_url}/chat/completions", headers=world.headers(), json=BODY)
    assert refused.status_code == 402
    assert refused.json()["error"]["code"] == "insufficient_credits"

    grant_credits(tenant=world.tenant, amount_usd=Decimal("5"), reason="top-up", actor=None)

    assert (
        httpx.post(
            f"{world.base_url}/chat/completions", headers=world.headers(), json=BODY
        ).status_code
        == 200
    )


def test_an_invoiced_plan_needs_no_credits_but_is_still_written_to_the_ledger(world):
    from tenants.models import Plan

    CreditLedgerEntry.objects.all().delete()
    world.tenant.plan = Plan.objects.get(slug="enterprise")
    world.tenant.save()
    world.gateway.sync()

    assert (
        httpx.post(
            f"{world.base_url}/chat/completions", headers=world.headers(), json=BODY
        ).status_code
        == 200
    )
    world.gateway.flush_usage()
    assert credit_balance(tenant_id=world.tenant.pk) < 0
