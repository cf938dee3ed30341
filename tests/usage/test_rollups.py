"""Hourly rollups equal the raw records' sums, whatever the order records arrive in; the
key and tenant rollups always equal UsageRollup summed over end users (and keys); and the
dashboard, rollups up to where they are complete and records after, counts each record once."""

from __future__ import annotations

import bisect
import itertools
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.core.cache import cache
from django.core.management import call_command
from django.core.management.color import no_style
from django.db import connection
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.factories import EndUserFactory, TenantAPIKeyFactory
from usage import selectors
from usage.choices import Outcome
from usage.dashboard import (
    LATENCY_COLUMNS,
    Scope,
    dashboard_window,
    unrolled_from,
    usage_dashboard,
)
from usage.models import (
    LATENCY_BUCKETS_MS,
    APIKeyUsageRollup,
    TenantUsageRollup,
    UsageRecord,
    UsageRollup,
    UsageRollupState,
)
from usage.rollups import (
    AGGREGATES,
    COARSER_ROLLUPS,
    GROUP_COLUMNS,
    ROLLUP_SETTLE_SECONDS,
    apply_usage_retention,
    rebuild_rollups,
    roll_up_usage,
)

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
    return sum_records(UsageRecord.objects.filter(**filters))


def sum_records(records) -> dict[tuple, dict]:
    """UsageRollup's rows as they should be for `records`: sums by GROUP_COLUMNS."""
    groups: dict[tuple, dict] = defaultdict(lambda: dict.fromkeys(AGGREGATES, 0))
    for r in records:
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


def coarser(groups: dict[tuple, dict], columns: tuple[str, ...]) -> dict[tuple, dict]:
    """UsageRollup-shaped groups summed down to `columns`: what a coarser rollup holds."""
    keep = [GROUP_COLUMNS.index(column) for column in columns]
    summed: dict[tuple, dict] = defaultdict(lambda: dict.fromkeys(AGGREGATES, 0))
    for key, sums in groups.items():
        into = summed[tuple(key[i] for i in keep)]
        for column, value in sums.items():
            into[column] += value
    return dict(summed)


def coarser_groups(model, columns: tuple[str, ...], **filters) -> dict[tuple, dict]:
    rows = list(model.objects.filter(**filters).values(*columns, *AGGREGATES))
    groups = {tuple(row[c] for c in columns): {c: row[c] for c in AGGREGATES} for row in rows}
    assert len(groups) == len(rows), f"two {model.__name__} rows for one group"
    return groups


def assert_rollups_hold(expected: dict[tuple, dict]) -> None:
    """Every rollup holds exactly `expected` (UsageRollup-shaped sums), nothing else."""
    assert rollup_groups() == expected
    assert {model for model, _ in COARSER_ROLLUPS} == {APIKeyUsageRollup, TenantUsageRollup}
    for model, columns in COARSER_ROLLUPS:
        assert coarser_groups(model, columns) == coarser(expected, columns), model.__name__


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
    assert_rollups_hold(expected)
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

    assert_rollups_hold(raw_groups())


def test_running_twice_leaves_the_same_rows(tenant, other_tenant):
    a_day_of_traffic(tenant, other_tenant)
    roll_up_usage(now=NOW)
    first = rollup_groups()

    roll_up_usage(now=NOW + timedelta(minutes=2))  # the second scan of every id
    roll_up_usage(now=NOW + timedelta(minutes=2))

    assert_rollups_hold(first)
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

    assert_rollups_hold(raw_groups())


def test_the_backfill_command_recomputes_a_range(tenant, other_tenant):
    a_day_of_traffic(tenant, other_tenant)
    roll_up_usage(now=NOW)
    UsageRollup.objects.filter(tenant=tenant).update(requests=0, cost_usd=0)  # damaged
    TenantUsageRollup.objects.filter(tenant=tenant).update(errors=0)
    APIKeyUsageRollup.objects.filter(tenant=tenant).update(output_tokens=1)

    call_command("rollup_usage", "--since", f"{NOW - timedelta(days=1):%Y-%m-%d}")
    call_command("rollup_usage", "--since", f"{NOW - timedelta(days=1):%Y-%m-%d}")

    assert_rollups_hold(raw_groups())


def test_the_backfill_can_be_limited_to_tenants(tenant, other_tenant):
    a_day_of_traffic(tenant, other_tenant)

    rebuild_rollups(start=NOW - timedelta(days=1), end=NOW, tenant_ids=[other_tenant.pk])

    assert_rollups_hold(raw_groups(tenant=other_tenant))


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


def test_period_spend_of_some_end_users_reads_their_rollups_then_records(tenant, other_tenant):
    alice, bob = a_day_of_traffic(tenant, other_tenant)
    roll_up_usage(now=NOW)
    make_records(tenant, at=NOW, count=3, end_user=bob)  # after the rollup: raw records
    start = NOW.replace(hour=0, minute=0)
    end = start + timedelta(days=1)
    records = list(UsageRecord.objects.filter(tenant=tenant))
    total = sum(r.cost_usd for r in records)

    def spent_by(user) -> Decimal:
        return sum((r.cost_usd for r in records if r.end_user_id == user.pk), Decimal(0))

    for users, expected in [
        ([], {}),
        ([bob.pk], {bob.pk: spent_by(bob)}),
        ([alice.pk, bob.pk], {alice.pk: spent_by(alice), bob.pk: spent_by(bob)}),
    ]:
        spend = selectors.period_spend(
            tenant_id=tenant.pk, start=start, end=end, end_user_ids=users
        )
        assert (spend.total_usd, spend.by_end_user) == (total, expected)
    assert spent_by(alice) > 0
    assert spent_by(bob) > 0

    recent = selectors.period_spend(tenant_id=tenant.pk, start=NOW, end=end)
    assert recent.total_usd == sum(r.cost_usd for r in records if r.created_at >= NOW) > 0


# --- both rollups agree with every record ever written, whatever happens (hypothesis) --------

HOURS_BACK = 60  # records land in the 60 hours before the moment they are written
RETENTION_DAYS = 1  # so retention deletes some of those hours and makes them final

batches = st.fixed_dictionaries(
    {
        "hours_back": st.integers(0, HOURS_BACK),
        "minute": st.integers(0, 59),
        "count": st.integers(1, 4),
        "tenant": st.sampled_from(["tenant", "other"]),
        "end_user": st.sampled_from([None, "alice", "bob"]),
        "api_key": st.booleans(),
        "route": st.sampled_from([(None, None), (1, 11), (1, 12), (2, 21)]),
        "offset": st.integers(0, len(LATENCIES) - 1),
    }
)
# What happens next: a batch of records, the rollup job after a while (sometimes too soon
# for the second scan), or retention.
steps = st.one_of(
    st.tuples(st.just("write"), batches),
    st.tuples(st.just("roll up"), st.integers(1, 2 * ROLLUP_SETTLE_SECONDS)),
    st.tuples(st.just("retention"), st.integers(1, 2 * ROLLUP_SETTLE_SECONDS)),
)


@hypothesis_settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(steps, min_size=1, max_size=14))
def test_both_rollups_always_equal_the_records_written(tenant, other_tenant, settings, history):
    settings.SWITCHYARD_USAGE_RETENTION_DAYS = RETENTION_DAYS
    # One database transaction serves every example: start each from nothing, record ids
    # from 1 again (the job walks ids from the last one it saw).
    for model in (UsageRecord, UsageRollup, *dict(COARSER_ROLLUPS), UsageRollupState):
        model.objects.all().delete()
    cache.clear()  # the dashboard's cached rollups of the last example
    with connection.cursor() as cursor:
        for sql in connection.ops.sequence_reset_sql(no_style(), [UsageRecord]):
            cursor.execute(sql)
    people = {
        "alice": EndUserFactory(tenant=tenant),
        "bob": EndUserFactory(tenant=tenant),
        None: None,
    }
    key = TenantAPIKeyFactory(tenant=tenant)
    written: list[UsageRecord] = []  # every record, also those retention deletes
    now = NOW
    for action, detail in history:
        if action == "write":
            batch = detail
            owner = tenant if batch["tenant"] == "tenant" else other_tenant
            provider_id, model_id = batch["route"]
            hour = now.replace(minute=0, second=0, microsecond=0)
            at = hour - timedelta(hours=batch["hours_back"], minutes=-batch["minute"])
            records = make_records(
                owner,
                at=min(at, now),
                count=batch["count"],
                end_user=people[batch["end_user"]] if owner == tenant else None,
                api_key=key if batch["api_key"] and owner == tenant else None,
                provider_id=provider_id,
                model_id=model_id,
            )
            # make_records cycles latencies from the start: shift some batches along
            for record in records[: batch["offset"] % len(records)]:
                record.latency_ms += 150
                record.save(update_fields=["latency_ms"])
            written += records
            now += timedelta(seconds=batch["count"])
        elif action == "roll up":
            now += timedelta(seconds=detail)
            roll_up_usage(now=now, batch_size=5)
        else:
            now += timedelta(seconds=detail)
            apply_usage_retention(now=now, batch_size=3)

    # The dashboard counts what the rollups it reads hold (every record the job has seen),
    # and every record from where it reads records on; nothing twice.
    mine = [r for r in written if r.tenant_id == tenant.pk]
    assert_dashboard_counts(tenant, now, mine)

    # The job catches up: every id scanned twice, a while apart.
    now += timedelta(seconds=ROLLUP_SETTLE_SECONDS + 2)
    roll_up_usage(now=now - timedelta(seconds=ROLLUP_SETTLE_SECONDS + 1))
    roll_up_usage(now=now)

    assert_rollups_hold(sum_records(written))
    assert_dashboard_counts(tenant, now, mine, every_one=True)


def assert_dashboard_counts(tenant, now, records, *, every_one: bool = False) -> None:
    """The dashboard's totals over the last week equal the sums of the `records` it should
    count: those from its raw part on, and those the rollup job has seen (a record written
    late for an hour it rolled up waits for its next run). `every_one`: that is all of them."""
    window = dashboard_window(period="7d", now=now, billing_day=1)
    state = UsageRollupState.objects.first()
    seen = state.scanned_through_id if state else 0
    split, _ = unrolled_from(
        window=window, complete_before=state and state.complete_before, now=now
    )
    counted = [r for r in records if r.created_at >= split or r.pk <= seen]
    if every_one:
        assert counted == records
    expected = dict.fromkeys(AGGREGATES, 0)
    for sums in sum_records(counted).values():
        for column, value in sums.items():
            expected[column] += value

    totals = usage_dashboard(tenant_id=tenant.pk, window=window, scope=Scope(), now=now).totals

    assert {
        "requests": totals.requests,
        "errors": totals.errors,
        "input_tokens": totals.input_tokens,
        "cached_tokens": totals.cached_tokens,
        "output_tokens": totals.output_tokens,
        "cost_usd": totals.cost_usd,
        "latency_total_ms": totals.latency_total_ms,
        **dict(zip(LATENCY_COLUMNS, totals.latency_buckets, strict=True)),
    } == expected
