"""Retention deletes old raw records in batches, after rolling them up; rollups stay."""

from __future__ import annotations

from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.usage.test_rollups import NOW, make_records, raw_groups, rollup_groups
from usage.models import UsageRecord, UsageRollup, UsageRollupState
from usage.rollups import apply_usage_retention, roll_up_usage

OLD = NOW - timedelta(days=100)
RECENT = NOW - timedelta(days=2)


def old_and_recent_records(tenant, other_tenant) -> None:
    for hour in range(3):
        make_records(tenant, at=OLD + timedelta(hours=hour), count=10, provider_id=1)
    make_records(other_tenant, at=OLD, count=6, provider_id=2)
    make_records(tenant, at=RECENT, count=4, provider_id=1)
    make_records(other_tenant, at=RECENT, count=2, provider_id=2)


def record_deletes(queries) -> int:
    return sum(q["sql"].startswith('DELETE FROM "usage_usagerecord"') for q in queries)


def test_old_records_are_deleted_in_batches_and_their_rollups_kept(tenant, other_tenant, settings):
    settings.SWITCHYARD_USAGE_RETENTION_DAYS = 90
    old_and_recent_records(tenant, other_tenant)
    roll_up_usage(now=NOW - timedelta(minutes=30))  # the hourly job ran earlier
    before = raw_groups()

    with CaptureQueriesContext(connection) as queries:
        run = apply_usage_retention(now=NOW, batch_size=7)

    assert run.finished
    assert run.deleted == 36
    assert record_deletes(queries.captured_queries) == 5 + 1  # 30 in batches of 7; then 6
    assert UsageRecord.objects.filter(created_at__lt=NOW - timedelta(days=90)).count() == 0
    assert UsageRecord.objects.count() == 6
    assert rollup_groups() == before  # the deleted records' hours are still there, whole


def test_hours_never_rolled_up_are_rolled_up_before_their_records_go(tenant, other_tenant):
    old_and_recent_records(tenant, other_tenant)
    before = raw_groups()

    first = apply_usage_retention(now=NOW)  # rolls up, but has seen the ids only once
    assert first.deleted == 0
    assert UsageRollup.objects.exists()

    second = apply_usage_retention(now=NOW + timedelta(minutes=5))

    assert second.deleted == 36
    assert rollup_groups() == before


def test_a_record_arriving_for_a_deleted_hour_is_added_to_its_rollup(tenant, other_tenant):
    old_and_recent_records(tenant, other_tenant)
    roll_up_usage(now=NOW - timedelta(minutes=30))
    apply_usage_retention(now=NOW)
    before = rollup_groups()
    assert UsageRollupState.objects.get().purged_before > OLD

    # Written months late: its hour's other records are gone, so the hour cannot be
    # recomputed; the record is added to the rollup once, however often the job runs.
    make_records(tenant, at=OLD + timedelta(minutes=30), count=2, provider_id=1)
    expected = {key: dict(sums) for key, sums in before.items()}
    for key, sums in raw_groups(created_at__lt=NOW - timedelta(days=90)).items():
        for column, value in sums.items():
            expected[key][column] += value
    roll_up_usage(now=NOW + timedelta(minutes=1))
    roll_up_usage(now=NOW + timedelta(minutes=3))
    apply_usage_retention(now=NOW + timedelta(minutes=5))

    assert rollup_groups() == expected
    assert UsageRecord.objects.filter(created_at__lt=NOW - timedelta(days=90)).count() == 0


def test_retention_keeps_every_record_when_nothing_is_old_enough(tenant, other_tenant, settings):
    settings.SWITCHYARD_USAGE_RETENTION_DAYS = 365
    old_and_recent_records(tenant, other_tenant)
    roll_up_usage(now=NOW - timedelta(minutes=30))

    assert apply_usage_retention(now=NOW).deleted == 0
    assert UsageRecord.objects.count() == 42
