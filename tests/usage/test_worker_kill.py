"""A worker killed mid-task: the broker hands the task to another worker, which finishes it
without doubling anything (acks_late, reject on worker lost, an idempotent task)."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from decimal import Decimal

import redis
from django.conf import settings

from tests.factories import TenantFactory
from tests.usage.test_alerts import wait_for
from tests.usage.test_alerts_two_workers import broker_is_idle
from tests.usage.test_rollups import NOW, raw_groups, rollup_groups
from usage.choices import Outcome
from usage.models import UsageRecord, UsageRollupState
from usage.tasks import roll_up_usage

VISIBILITY_TIMEOUT = 3
RECORDS = 1500
BATCH = 5  # ids per pass: 300 transactions, seconds of work to interrupt


def scanned_through() -> int:
    state = UsageRollupState.objects.first()
    return state.scanned_through_id if state else 0


def test_a_rollup_killed_mid_run_is_finished_by_another_worker_exactly(
    celery_worker_process, tenant
):
    others = [TenantFactory() for _ in range(2)]
    tenants = [tenant, *others]
    UsageRecord.objects.bulk_create(
        UsageRecord(
            created_at=NOW - timedelta(minutes=n),
            tenant=tenants[n % 3],
            request_id=uuid.uuid4(),
            outcome=Outcome.SUCCESS if n % 5 else Outcome.TIMEOUT,
            provider_id=n % 2 + 1,
            model_id=n % 4 + 1,
            input_tokens=n,
            output_tokens=n % 50,
            cost_usd=Decimal("0.0001") * n,
            latency_ms=n * 7,
        )
        for n in range(RECORDS)
    )
    first_id = UsageRecord.objects.earliest("pk").pk
    last_id = UsageRecord.objects.latest("pk").pk
    env = {"SWITCHYARD_BROKER_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT)}
    doomed = celery_worker_process(name="doomed", **env)

    roll_up_usage.delay(batch_size=BATCH)
    wait_for(lambda: scanned_through() > first_id + RECORDS // 5, seconds=60)
    doomed.kill()

    at_kill = scanned_through()
    assert at_kill < last_id, "the task finished before the kill: make it slower"
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    assert broker.hlen("unacked") == 1  # taken, never acknowledged
    broker.close()

    time.sleep(VISIBILITY_TIMEOUT + 1)  # the message becomes visible to other workers again
    # Two processes: the parent answers the fixture's ping while a child runs the task.
    celery_worker_process(name="rescuer", concurrency=2, **env)
    wait_for(lambda: scanned_through() == last_id, seconds=120)
    wait_for(broker_is_idle, seconds=60)

    assert rollup_groups() == raw_groups()  # no group missing, none counted twice
