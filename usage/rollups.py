"""Hourly usage rollups, and the retention of raw records that they make possible.

A rollup row is never incremented: the rows of a (tenant, hour) are deleted and computed
again from the raw records with one INSERT ... SELECT, in the transaction that holds the
rollup state's row lock. Running anything here twice therefore leaves the same rows.

Three rollups: UsageRollup per end user, API key, provider and model; APIKeyUsageRollup
per API key, provider and model; TenantUsageRollup per provider and model (whole-tenant
dashboards read it: a few hundredth of the rows). The coarser two are never computed from
raw records: every change to a tenant's hours of UsageRollup is followed, in the same
transaction, by summing those hours into them again, so the three always agree.

Which hours to recompute is found by record id, not by time: ids only grow, so the records
written since the last run (a late batch for an old hour included) are those above the last
id seen. Every id range is scanned twice, at least ROLLUP_SETTLE_SECONDS apart: an id can
become visible after a larger one (two usage batches committing out of order), and the
second scan catches what the first could not see. Retention deletes raw records only in
hours whose every record has been scanned twice; those hours are final, never recomputed
(a record that still arrives for one is added to its rollup, once).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import Count, F, Max, Min, Q, QuerySet, Sum
from django.db.models.functions import Trunc

from tenants.models import Tenant
from usage.choices import Outcome
from usage.models import (
    LATENCY_BUCKETS_MS,
    APIKeyUsageRollup,
    HourlyUsage,
    TenantUsageRollup,
    UsageRecord,
    UsageRollup,
    UsageRollupState,
)

logger = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
STATE_ID = 1
# Record ids per pass: one pass is one transaction (the state row stays locked through it)
# and one scan for the hours it touched; 200k records take about a second on PostgreSQL.
ROLLUP_BATCH_RECORDS = 200_000
# A run stops between passes after this long, under CELERY_TASK_SOFT_TIME_LIMIT (240 s); the
# task then queues its continuation.
ROLLUP_MAX_SECONDS = 180
# A usage batch is written in one transaction of milliseconds: ids scanned this long ago have
# all committed, so a second scan of them sees every record.
ROLLUP_SETTLE_SECONDS = 60
# Hours a backfill (`rollup_usage --since`) recomputes per tenant per transaction.
BACKFILL_HOURS_PER_TRANSACTION = 24
# Record ids per DELETE: bounds each statement's row locks and WAL burst, so replicas and
# the usage writer never wait long behind retention.
RETENTION_BATCH_SIZE = 5000
RETENTION_MAX_SECONDS = 180

GROUP_COLUMNS = ("hour", "tenant_id", "end_user_id", "api_key_id", "provider_id", "model_id")
# The rollups summed from UsageRollup, and the columns each keeps.
COARSER_ROLLUPS: tuple[tuple[type[HourlyUsage], tuple[str, ...]], ...] = (
    (APIKeyUsageRollup, ("hour", "tenant_id", "api_key_id", "provider_id", "model_id")),
    (TenantUsageRollup, ("hour", "tenant_id", "provider_id", "model_id")),
)


def _latency_buckets() -> dict[str, Q]:
    """Rollup column -> the records it counts: latency in (previous bound, bound]."""
    buckets: dict[str, Q] = {}
    previous = None
    for bound in LATENCY_BUCKETS_MS:
        in_range = Q(latency_ms__lte=bound)
        if previous is not None:
            in_range &= Q(latency_ms__gt=previous)
        buckets[f"latency_le_{bound}"] = in_range
        previous = bound
    buckets[f"latency_gt_{previous}"] = Q(latency_ms__gt=previous)
    return buckets


SUCCEEDED = Q(outcome=Outcome.SUCCESS)
# Rollup column -> its aggregate over the group's records (requests + errors = attempts).
AGGREGATES = {
    "requests": Count("pk", filter=SUCCEEDED),
    "errors": Count("pk", filter=~SUCCEEDED),
    "input_tokens": Sum("input_tokens"),
    "cached_tokens": Sum("cached_tokens"),
    "output_tokens": Sum("output_tokens"),
    "cost_usd": Sum("cost_usd"),
    "latency_total_ms": Sum("latency_ms"),
    **{column: Count("pk", filter=records) for column, records in _latency_buckets().items()},
}


@dataclass(frozen=True, slots=True)
class RollupRun:
    """What a run did: (tenant, hour)s recomputed, and whether it reached the newest record."""

    hours: int
    scanned_through_id: int
    caught_up: bool


@dataclass(frozen=True, slots=True)
class RetentionRun:
    """What retention did: records deleted, the hour before which they were, and whether it
    finished (it stops at its deadline; the task then queues its continuation)."""

    deleted: int
    deleted_before: datetime
    finished: bool


def truncate_to_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _locked_state() -> UsageRollupState:
    """The state row, locked until the surrounding transaction ends; created on first use."""
    state, _ = UsageRollupState.objects.select_for_update().get_or_create(pk=STATE_ID)
    return state


def hourly_aggregates(
    records: QuerySet[UsageRecord], group_columns: Sequence[str] = GROUP_COLUMNS
) -> QuerySet:
    """`records` summed per hour and group: `group_columns` (GROUP_COLUMNS or fewer of them,
    "hour" included), then `sum_<column>` of every AGGREGATES column, in that order.

    What a rollup row holds; the usage dashboard sums the records the rollups do not hold yet
    with it too (per hour, provider and model), so both give the same figures.
    """
    return (
        records.annotate(hour=Trunc("created_at", "hour", tzinfo=UTC))
        .values(*group_columns)
        .annotate(**{f"sum_{column}": aggregate for column, aggregate in AGGREGATES.items()})
        .order_by()
    )


def _insert_select(
    model: type[models.Model], queryset: QuerySet, group_columns: Sequence[str]
) -> None:
    """INSERT INTO `model`'s table the rows of `queryset`, which selects `group_columns` and
    then `sum_<column>` of every AGGREGATES column. One statement: the sums never travel to
    Python and back. Names are ours; values are parameters."""
    expected = [*group_columns, *(f"sum_{column}" for column in AGGREGATES)]
    if list(queryset.query.selected or ()) != expected:  # the INSERT relies on this order
        raise RuntimeError(f"Unexpected rollup column order: {queryset.query.selected}")
    select_sql, params = queryset.query.sql_with_params()
    quote = connection.ops.quote_name
    columns = ", ".join(quote(column) for column in (*group_columns, *AGGREGATES))
    insert_sql = f"INSERT INTO {quote(model._meta.db_table)} ({columns}) {select_sql}"
    with connection.cursor() as cursor:
        cursor.execute(insert_sql, params)


def _rebuild_range(tenant_id: int, start: datetime, end: datetime) -> None:
    """Replace the tenant's rollups of hours [start, end) with the aggregate of its records.

    Call inside the transaction that locked the rollup state.
    """
    UsageRollup.objects.filter(tenant_id=tenant_id, hour__gte=start, hour__lt=end).delete()
    records = UsageRecord.objects.filter(
        tenant_id=tenant_id, created_at__gte=start, created_at__lt=end
    )
    _insert_select(UsageRollup, hourly_aggregates(records), GROUP_COLUMNS)
    _sum_coarser_rollups(tenant_id, start, end)


def _sum_coarser_rollups(tenant_id: int, start: datetime, end: datetime) -> None:
    """Replace the tenant's COARSER_ROLLUPS rows of hours [start, end) with the sums of its
    UsageRollup rows there.

    Call after any change to those UsageRollup rows, in the same transaction. Summing the
    rollups rather than the raw records reads a fraction of the rows, and works for final
    hours too, whose raw records are gone.
    """
    hours = {"tenant_id": tenant_id, "hour__gte": start, "hour__lt": end}
    for model, columns in COARSER_ROLLUPS:
        model.objects.filter(**hours).delete()
        sums = (
            UsageRollup.objects.filter(**hours)
            .values(*columns)
            .annotate(**{f"sum_{column}": Sum(column) for column in AGGREGATES})
            .order_by()
        )
        _insert_select(model, sums, columns)


def _hour_ranges(hours: Iterable[datetime]) -> list[tuple[datetime, datetime]]:
    """Sorted hours merged into [start, end) ranges of consecutive hours."""
    ranges: list[tuple[datetime, datetime]] = []
    for hour in sorted(set(hours)):
        if ranges and ranges[-1][1] == hour:
            ranges[-1] = (ranges[-1][0], hour + HOUR)
        else:
            ranges.append((hour, hour + HOUR))
    return ranges


def _rebuild_hours(keys: Iterable[tuple[int, datetime]]) -> None:
    """Recompute the given (tenant id, hour)s from their raw records."""
    by_tenant: dict[int, list[datetime]] = defaultdict(list)
    for tenant_id, hour in keys:
        by_tenant[tenant_id].append(hour)
    for tenant_id, hours in by_tenant.items():
        for start, end in _hour_ranges(hours):
            _rebuild_range(tenant_id, start, end)


def _add_to_final_hours(keys: Iterable[tuple[int, datetime]], first_id: int, last_id: int) -> None:
    """Add the records (first_id, last_id] of final hours to those hours' rollups.

    A final hour's other raw records are gone, so it cannot be recomputed: a record written
    for it this late is added instead. Exactly once per record: call in the transaction that
    moves scanned_through_id past `last_id`, with `first_id` at least its old value.
    """
    by_tenant: dict[int, list[datetime]] = defaultdict(list)
    for tenant_id, hour in keys:
        by_tenant[tenant_id].append(hour)
    for tenant_id, hours in by_tenant.items():
        for start, end in _hour_ranges(hours):
            records = UsageRecord.objects.filter(
                tenant_id=tenant_id,
                created_at__gte=start,
                created_at__lt=end,
                pk__gt=first_id,
                pk__lte=last_id,
            )
            for row in hourly_aggregates(records):
                group = {column: row[column] for column in GROUP_COLUMNS}
                sums = {column: row[f"sum_{column}"] or 0 for column in AGGREGATES}
                updated = UsageRollup.objects.filter(**group).update(
                    **{column: F(column) + value for column, value in sums.items()}
                )
                if not updated:
                    UsageRollup.objects.create(**group, **sums)
            _sum_coarser_rollups(tenant_id, start, end)
            logger.info("usage.late_records_rolled_up", extra={"tenant_id": tenant_id})


def _hours_with_records(first_id: int, last_id: int) -> set[tuple[int, datetime]]:
    """(tenant id, hour) of every record with an id in (first_id, last_id]."""
    return set(
        UsageRecord.objects.filter(pk__gt=first_id, pk__lte=last_id)
        .annotate(hour=Trunc("created_at", "hour", tzinfo=UTC))
        .values_list("tenant_id", "hour")
        .distinct()
        .order_by()
    )


def _pass(first_id: int, last_id: int, *, now: datetime, settling: bool, newest: int) -> int:
    """Roll up the hours of records (first_id, last_id] and move the state on, in one
    transaction; returns how many (tenant, hour)s. `settling`: the second scan of those ids."""
    with transaction.atomic():
        state = _locked_state()
        touched = _hours_with_records(first_id, last_id)
        final_before = state.purged_before
        final = {key for key in touched if final_before is not None and key[1] < final_before}
        _rebuild_hours(touched - final)
        if settling:
            state.settled_through_id = max(state.settled_through_id, last_id)
        else:
            unseen_from = max(first_id, state.scanned_through_id)
            if final and unseen_from < last_id:
                _add_to_final_hours(final, unseen_from, last_id)
            if last_id > state.scanned_through_id:
                state.scanned_through_id = last_id
                # The latest start of a run that scanned them: the second scan waits for it.
                state.scanned_at = max(state.scanned_at or now, now)
            if last_id >= newest:
                complete = truncate_to_hour(now)
                if state.complete_before is None or complete > state.complete_before:
                    state.complete_before = complete
        state.save()
    return len(touched)


def roll_up_usage(
    *,
    now: datetime,
    batch_size: int = ROLLUP_BATCH_RECORDS,
    max_seconds: float = ROLLUP_MAX_SECONDS,
) -> RollupRun:
    """Recompute the rollups of every hour that has records the job has not seen (twice).

    First the second scan of ids seen at least ROLLUP_SETTLE_SECONDS ago, then the first
    scan of new ids, `batch_size` ids per transaction; stops between passes after
    `max_seconds`. Safe to run concurrently and to kill at any point.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1.")
    deadline = time.monotonic() + max_seconds
    newest = UsageRecord.objects.aggregate(newest=Max("pk"))["newest"] or 0
    with transaction.atomic():
        state = _locked_state()
        settled, scanned, scanned_at = (
            state.settled_through_id,
            state.scanned_through_id,
            state.scanned_at,
        )
    hours = 0

    def out_of_time() -> bool:
        return time.monotonic() > deadline

    if scanned_at is not None and now - scanned_at >= timedelta(seconds=ROLLUP_SETTLE_SECONDS):
        while settled < scanned:
            if out_of_time():
                return RollupRun(hours, scanned, caught_up=False)
            last = min(settled + batch_size, scanned)
            hours += _pass(settled, last, now=now, settling=True, newest=newest)
            settled = last

    while True:
        if out_of_time():
            return RollupRun(hours, scanned, caught_up=False)
        last = min(scanned + batch_size, newest)
        # The last pass runs even with no new ids: it marks the hours before `now` complete.
        hours += _pass(scanned, last, now=now, settling=False, newest=newest)
        scanned = last
        if scanned >= newest:
            break
    logger.info("usage.rolled_up", extra={"hours": hours, "scanned_through_id": scanned})
    return RollupRun(hours, scanned, caught_up=True)


def rebuild_rollups(
    *, start: datetime, end: datetime, tenant_ids: Sequence[int] | None = None
) -> int:
    """Recompute every hour in [start, end) of the given tenants (default: every tenant with
    records there) from raw records: a backfill or a repair. Final hours are left alone."""
    start, end = truncate_to_hour(start), truncate_to_hour(end - timedelta(microseconds=1)) + HOUR
    if tenant_ids is None:
        tenant_ids = _tenants_with_records(start, end)
    step = BACKFILL_HOURS_PER_TRANSACTION * HOUR
    hours = 0
    for tenant_id in tenant_ids:
        chunk_start = start
        while chunk_start < end:
            chunk_end = min(chunk_start + step, end)
            with transaction.atomic():
                final_before = _locked_state().purged_before
                first = max(chunk_start, final_before) if final_before else chunk_start
                if first < chunk_end:
                    _rebuild_range(tenant_id, first, chunk_end)
                    hours += (chunk_end - first) // HOUR
            chunk_start = chunk_end
    return hours


def _tenants_with_records(start: datetime, end: datetime) -> list[int]:
    # One index probe per tenant on (tenant, created_at), instead of a scan by time.
    return [
        tenant_id
        for tenant_id in Tenant.objects.order_by("pk").values_list("pk", flat=True)
        if UsageRecord.objects.filter(
            tenant_id=tenant_id, created_at__gte=start, created_at__lt=end
        ).exists()
    ]


def apply_usage_retention(
    *,
    now: datetime,
    batch_size: int = RETENTION_BATCH_SIZE,
    max_seconds: float = RETENTION_MAX_SECONDS,
) -> RetentionRun:
    """Delete raw usage records older than SWITCHYARD_USAGE_RETENTION_DAYS, `batch_size` ids
    per DELETE; their hours are rolled up first and the rollups kept.

    Only hours whose every record has been rolled up (and scanned twice) are deleted, so a
    backlog the rollup job has not reached yet waits for it.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1.")
    deadline = time.monotonic() + max_seconds
    roll_up_usage(now=now, max_seconds=max_seconds / 2)
    cutoff = truncate_to_hour(now - timedelta(days=settings.SWITCHYARD_USAGE_RETENTION_DAYS))
    with transaction.atomic():
        state = _locked_state()
        settled_through = state.settled_through_id
        unsettled = UsageRecord.objects.filter(pk__gt=settled_through).aggregate(
            oldest=Min("created_at")
        )["oldest"]
        delete_before = cutoff if unsettled is None else min(cutoff, truncate_to_hour(unsettled))
        previous = state.purged_before
        if previous is None or delete_before > previous:
            # From now on these hours are final: their raw records are about to go.
            state.purged_before = delete_before
            state.save(update_fields=["purged_before", "updated_at"])

    deleted = 0
    for tenant_id in _rolled_up_tenant_ids():
        old = UsageRecord.objects.filter(
            tenant_id=tenant_id, created_at__lt=delete_before, pk__lte=settled_through
        )
        while True:
            if time.monotonic() > deadline:
                logger.info("usage.retention_paused", extra={"deleted": deleted})
                return RetentionRun(deleted, delete_before, finished=False)
            ids = list(old.order_by("created_at").values_list("pk", flat=True)[:batch_size])
            if not ids:
                break
            deleted += UsageRecord.objects.filter(pk__in=ids).delete()[0]
            if len(ids) < batch_size:
                break
    logger.info(
        "usage.retention_applied",
        extra={"deleted": deleted, "deleted_before": delete_before.isoformat()},
    )
    return RetentionRun(deleted, delete_before, finished=True)


def _rolled_up_tenant_ids() -> Iterator[int]:
    """Every tenant id with rollups, deleted tenants' included (their records stay behind).

    Every record up to the settled id was rolled up, so these are the tenants that can have
    records to delete. One probe of the (tenant, hour, ...) index of the smaller, tenant
    rollup per tenant, not a scan: PostgreSQL has no skip scan, so the loop does it.
    """
    last = 0
    while True:
        tenant_id = (
            TenantUsageRollup.objects.filter(tenant_id__gt=last)
            .order_by("tenant_id")
            .values_list("tenant_id", flat=True)
            .first()
        )
        if tenant_id is None:
            return
        yield tenant_id
        last = tenant_id
