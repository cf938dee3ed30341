"""Hourly rollups equal the raw records' sums, whatever the order records arrive in."""

from __future__ import annotations

import bisect
import itertools
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.core.management import call_command

from tests.factories import EndUserFactory, TenantAPIKeyFactory
from usage import selectors
from usage.choices import Outcome
from usage.models import LATENCY_BUCKETS_MS, UsageRecord, UsageRollup, UsageRollupState
from usage.rollups import AGGREGATES, GROUP_COLUMNS, rebuild_rollups, roll_up_usage

NOW = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)
# Latencies on both sides of every bucket bound.
LATENCIES = [0, 100, 101, 250, 251, 499, 1000, 1001, 2500, 4999, 5000, 10000, 10001, 60000]


def make_records(tenant, *, at, count, **fields) -> list[UsageRecord]:
    """`count` records at `at` (+1 s each), cycling through outcomes and latencies."""
    outcomes = itertools.cycle([Outcome.SUCCESS, Outcome.SUCCESS, Outcome.UPSTREAM_ERROR])
    latencies = itertools.cycle(LATENCIES)
    rows = [
        UsageRecord(
            created_at=at + timedelta(seconds=n),
            tenant=tenant,
            request_id=uuid.uuid4(),
            outcome=next(outcomes),
            input_tokens=100 + n,
            cached_tokens=n % 7,
            output_tokens=20 + n % 13,
            cost_usd=Decimal("0.00012345") * (n + 1),
            latency_ms=next(latencies),
            **fields,
        )
        for n in range(count)
    ]
    return UsageRecord.objects.bulk_create(rows)


def _bucket(latency_ms: int) -> str:
    index = bisect.bisect_left(LATENCY_BUCKETS_MS, latency_ms)
    if index == len(LATENCY_BUCKETS_MS):
        return f"latency_gt_{LATENCY_BUCKETS_MS[-1]}"
    return f"latency_le_{LATENCY_BUCKETS_MS[index]}"


def raw_groups(**filters) -> dict[tuple, dict]:
    """The rollups as they should be, summed in Python from the raw records."""
    groups: dict[tuple, dict] = defaultdict(lambda: dict.fromkeys(AGGREGATES, 0))
    for r in UsageRecord.objects.filter(**filters):
        hour = r.created_at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        sums = groups[(hour, r.tenant_id, r.end_user_id, r.api_key_id, r.provider_id, r.model_id)]
        sums["requests" if r.outcome == Outcome.SUCCESS else "errors"] += 1
        sums["input_tokens"] += r.input_tokens
        sums["cached_tokens"] += r.cached_tokens
        sums["output_tokens"] += r.output_tokens
        sums["cost_usd"] += r.cost_usd
        sums["latency_total_ms"] += r.latency_ms
        sums[_bucket(r.latency_ms)] += 1
    return dict(groups)


def rollup_groups(**filters) -> dict[tuple, dict]:
    rows = list(UsageRollup.objects.filter(**filters).values(*GROUP_COLUMNS, *AGGREGATES))
    groups = {tuple(row[c] for c in GROUP_COLUMNS): {c: row[c] for c in AGGREGATES} for row in rows}
    assert len(groups) == len(rows), "two rollup rows for one group"
    return groups


def a_day_of_traffic(tenant, other_tenant):
    """Records over three hours, two providers and models, two end users and a key."""
    alice, bob = EndUserFactory(tenant=tenant), EndUserFactory(tenant=tenant)
    key = TenantAPIKeyFactory(tenant=tenant)
    start = NOW.replace(minute=0) - timedelta(hours=3)
    for hour, (end_user, api_key, provider_id, model_id) in itertools.product(
        range(3),
        [(alice, key, 1, 11), (bob, key, 1, 12), (None, None, 2, 21), (alice, None, None, None)],
    ):
        make_records(
            tenant,
            at=start + timedelta(hours=hour, minutes=7),
            count=len(LATENCIES) + hour,
            end_user=end_user,
            api_key=api_key,
            provider_id=provider_id,
            model_id=model_id,
        )
    make_records(other_tenant, at=start, count=5, provider_id=1, model_id=11)
    return alice, bob


def test_rollups_equal_the_raw_sums_of_every_group(tenant, other_tenant):
    a_day_of_traffic(tenant, other_tenant)

    run = roll_up_usage(now=NOW)

    assert run.caught_up
    expected = raw_groups()
    assert len(expected) == 3 * 4 + 1
    assert rollup_groups() == expected
    for sums in rollup_groups().values():
        buckets = sum(v for k, v in sums.items() if k.startswith(("latency_le_", "latency_gt_")))
        assert buckets == sums["requests"] + sums["errors"]


def test_late_records_for_a_rolled_up_hour_are_added_by_the_next_run(tenant, other_tenant):
    alice, _ = a_day_of_traffic(tenant, other_tenant)
    roll_up_usage(now=NOW)
    old_hour = NOW.replace(minute=0) - timedelta(hours=3)

    # A batch written late: an hour already rolled up, an existing group and a new one.
    make_records(
        tenant,
        at=old_hour + timedelta(minutes=50),
        count=4,
        end_user=alice,
        provider_id=1,
        model_id=11,
    )
    make_records(tenant, at=old_hour + timedelta(minutes=51), count=3, provider_id=3)
    roll_up_usage(now=NOW + timedelta(seconds=5))

    assert rollup_groups() == raw_groups()


def test_running_twice_leaves_the_same_rows(tenant, other_tenant):
    a_day_of_traffic(tenant, other_tenant)
    roll_up_usage(now=NOW)
    first = rollup_groups()

    roll_up_usage(now=NOW + timedelta(minutes=2))  # the second scan of every id
    roll_up_usage(now=NOW + timedelta(minutes=2))

    assert rollup_groups() == first
    state = UsageRollupState.objects.get()
    assert (
        state.settled_through_id == state.scanned_through_id == UsageRecord.objects.latest("pk").pk
    )


def record_with_id(tenant, pk: int, *, at: datetime) -> None:
    UsageRecord.objects.create(
        pk=pk, created_at=at, tenant=tenant, request_id=uuid.uuid4(), outcome=Outcome.SUCCESS
    )


def test_a_record_that_commits_after_a_larger_id_is_caught_by_the_second_scan(tenant):
    (first,) = make_records(tenant, at=NOW - timedelta(hours=2), count=1)
    record_with_id(tenant, first.pk + 10, at=NOW)
    roll_up_usage(now=NOW)
    # Another writer's batch took id first.pk + 5 before the scan but committed after it.
    record_with_id(tenant, first.pk + 5, at=NOW - timedelta(hours=5))

    roll_up_usage(now=NOW + timedelta(seconds=10))
    assert rollup_groups() != raw_groups()  # too soon for the second scan

    roll_up_usage(now=NOW + timedelta(minutes=2))
    assert rollup_groups() == raw_groups()


def test_small_batches_give_the_same_rollups(tenant, other_tenant):
    a_day_of_traffic(tenant, other_tenant)

    roll_up_usage(now=NOW, batch_size=7)

    assert rollup_groups() == raw_groups()


def test_the_backfill_command_recomputes_a_range(tenant, other_tenant):
    a_day_of_traffic(tenant, other_tenant)
    roll_up_usage(now=NOW)
    UsageRollup.objects.filter(tenant=tenant).update(requests=0, cost_usd=0)  # damaged

    call_command("rollup_usage", "--since", f"{NOW - timedelta(days=1):%Y-%m-%d}")
    call_command("rollup_usage", "--since", f"{NOW - timedelta(days=1):%Y-%m-%d}")

    assert rollup_groups() == raw_groups()


def test_the_backfill_can_be_limited_to_tenants(tenant, other_tenant):
    a_day_of_traffic(tenant, other_tenant)

    rebuild_rollups(start=NOW - timedelta(days=1), end=NOW, tenant_ids=[other_tenant.pk])

    assert rollup_groups() == raw_groups(tenant=other_tenant)


def test_period_spend_reads_rollups_then_records_and_equals_the_raw_sum(tenant, other_tenant):
    alice, bob = a_day_of_traffic(tenant, other_tenant)
    roll_up_usage(now=NOW)
    make_records(tenant, at=NOW, count=3, end_user=bob)  # after the rollup: raw records
    start, end = NOW - timedelta(days=1), NOW + timedelta(days=1)

    spend = selectors.period_spend(tenant_id=tenant.pk, start=start, end=end)

    records = UsageRecord.objects.filter(tenant=tenant)
    assert spend.total_usd == sum(r.cost_usd for r in records)
    assert spend.by_end_user == {
        user.pk: sum(r.cost_usd for r in records if r.end_user_id == user.pk)
        for user in (alice, bob)
    }
    assert UsageRollupState.objects.get().complete_before == NOW.replace(minute=0)
