"""A usage record stays lean on disk: SPEC's target is ≤ 0.5 KB a row, indexes included."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

from django.db import connection
from django.utils import timezone

from tests.factories import EndUserFactory, TenantAPIKeyFactory
from usage.choices import KeySource, Outcome
from usage.entries import UsageEntry
from usage.models import UsageRecord
from usage.recording import write_usage

ROWS = 20_000


def test_a_usage_record_takes_at_most_half_a_kilobyte_with_its_indexes(tenant):
    users = [EndUserFactory(tenant=tenant) for _ in range(20)]
    key = TenantAPIKeyFactory(tenant=tenant)
    start = timezone.now() - timedelta(days=1)
    entries = [
        UsageEntry(
            created_at=start + timedelta(seconds=i),
            tenant_id=tenant.pk,
            request_id=uuid.uuid4(),
            attempt=1 + i % 2,
            outcome=Outcome.SUCCESS if i % 10 else Outcome.UPSTREAM_ERROR,
            end_user_id=users[i % 20].pk,
            api_key_id=key.pk,
            provider_id=1 + i % 3,
            model_id=10 + i % 7,
            key_source=KeySource.PLATFORM,
            power_level=2,
            http_status=200 if i % 10 else 503,
            is_stream=bool(i % 3),
            input_tokens=1200 + i % 500,
            cached_tokens=i % 300,
            output_tokens=350 + i % 200,
            cost_usd=Decimal("0.00123456"),
            latency_ms=800 + i % 900,
            ttft_ms=120 + i % 80,
            error="" if i % 10 else "upstream 503: overloaded",
        )
        for i in range(ROWS)
    ]

    write_usage(entries)

    assert UsageRecord.objects.count() == ROWS
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_total_relation_size(%s)", [UsageRecord._meta.db_table])
        total_bytes = cursor.fetchone()[0]
    assert total_bytes / ROWS <= 512, f"{total_bytes / ROWS:.0f} bytes a row"
