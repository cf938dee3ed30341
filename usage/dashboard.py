"""Reads of the usage dashboard: a tenant's usage from the hourly rollups (usage.rollups),
and from the raw records of the hours the rollups do not hold in full yet.

Charts, tiles and tables come from grouped queries over the rollups (per provider and model,
per time bucket), so a month of a busy tenant costs a range scan of its rollups, never a
scan of its raw records; their result is cached until the rollup job next runs. The scan
reads the coarsest rollup the filters allow: TenantUsageRollup without an end-user or key
filter (a month of a busy tenant is thousands of rows there, not hundreds of thousands),
APIKeyUsageRollup for one key, UsageRollup (by its end-user index) for one end user.

Hours from the rollup job's `complete_before` on (the current one, and the last one until the
job has run) are summed from raw records instead, per hour, provider and model, by the job's
own aggregation (usage.rollups.hourly_aggregates): the same figures it will store, read live
(not cached) by one range scan of the (tenant, created_at) index. An hour is read from one
source only, so nothing counts twice; a record written late for an hour already rolled up
counts from the next rollup run, as in usage.selectors.period_spend. Without a rollup run
(or that far behind) raw records are read at most RAW_AT_MOST back. The list of recent
requests is the other raw read: the newest few records by the same index.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.apps import apps
from django.core.cache import cache
from django.db.models import F, QuerySet, Sum
from django.db.models.functions import Trunc
from django.utils import timezone

from usage.models import (
    LATENCY_BUCKETS_MS,
    APIKeyUsageRollup,
    HourlyUsage,
    TenantUsageRollup,
    UsageRecord,
    UsageRollup,
    UsageRollupState,
)
from usage.periods import period_bounds
from usage.rollups import AGGREGATES, hourly_aggregates, truncate_to_hour

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# Up to a week is drawn hour by hour (168 bars still read as a shape); longer, day by day.
HOURLY_UP_TO = timedelta(days=7)
# The longest custom range: the CSV export's limit (usage.selectors.MAX_REPORT_DAYS).
MAX_DAYS = 400
RECENT_REQUESTS = 20
# The grouped rollups of a window are cached until the rollup job next runs (it saves its
# state row every run, and the state's time is in the key). This bounds how long a rebuild
# that leaves the state alone (`rollup_usage --since`) takes to show.
CACHE_SECONDS = 15 * 60
# Raw records are summed from the rollup job's `complete_before` on: normally the current
# hour (and the last one until the job runs). Without a run to lean on (the job never ran,
# or is a day behind) they are read at most this far back, up to now: a day of a busy
# tenant's records is about what one view can sum in time. Earlier hours of the window then
# show only what the rollups hold, and the page says so.
RAW_AT_MOST = timedelta(hours=24)

PERIODS = {
    "24h": "Last 24 hours",
    "7d": "Last 7 days",
    "30d": "Last 30 days",
    "month": "This billing month",
    "custom": "Custom dates",
}
DEFAULT_PERIOD = "7d"

LATENCY_COLUMNS = (
    *(f"latency_le_{bound}" for bound in LATENCY_BUCKETS_MS),
    f"latency_gt_{LATENCY_BUCKETS_MS[-1]}",
)
# The rollups' measures, in the order usage.rollups.hourly_aggregates sums them: requests,
# errors, tokens, cost, latency total, then LATENCY_COLUMNS.
SUM_COLUMNS = tuple(AGGREGATES)


@dataclass(frozen=True, slots=True)
class Window:
    """UTC hours [start, end) drawn in `bucket`s ("hour" or "day"); `first_day`..`last_day`
    are the inclusive UTC days the CSV export covers for it."""

    period: str
    start: datetime
    end: datetime
    bucket: str

    @property
    def step(self) -> timedelta:
        return HOUR if self.bucket == "hour" else DAY

    @property
    def first_day(self) -> date:
        return self.start.date()

    @property
    def last_day(self) -> date:
        return (self.end - timedelta(microseconds=1)).date()

    def bucket_starts(self) -> list[datetime]:
        starts, moment = [], self.start
        while moment < self.end:
            starts.append(moment)
            moment += self.step
        return starts


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _window(period: str, start: datetime, end: datetime, now_hour: datetime) -> Window:
    # Hours not lived yet are left out: they would draw as a drop to zero.
    if start < now_hour + HOUR < end:
        end = now_hour + HOUR
    bucket = "hour" if end - start <= HOURLY_UP_TO else "day"
    return Window(period, start, end, bucket)


def dashboard_window(
    *,
    period: str,
    now: datetime,
    billing_day: int,
    first_day: date | None = None,
    last_day: date | None = None,
) -> Window:
    """The hours a period covers at `now`, up to the current hour. Custom dates are
    inclusive UTC days."""
    this_hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    tomorrow = _midnight(now.astimezone(UTC).date()) + DAY
    if period == "24h":
        return _window(period, this_hour - 23 * HOUR, this_hour + HOUR, this_hour)
    if period == "7d":
        return _window(period, tomorrow - 7 * DAY, tomorrow, this_hour)
    if period == "30d":
        return _window(period, tomorrow - 30 * DAY, tomorrow, this_hour)
    if period == "month":
        start, end = period_bounds(billing_day, now)
        return _window(period, start, end, this_hour)
    if period == "custom":
        if first_day is None or last_day is None or first_day > last_day:
            raise ValueError("A custom period needs a first day on or before its last day.")
        return _window(period, _midnight(first_day), _midnight(last_day) + DAY, this_hour)
    raise ValueError(f"Unknown period: {period!r}.")


@dataclass(frozen=True, slots=True)
class Scope:
    """Whose usage: end user and API key narrow the rollups in SQL, provider and model are
    applied to the grouped rows (so the filter menus still list every provider and model of
    the period). `matches_nothing`: a filter named something that is not the tenant's."""

    end_user_id: int | None = None
    api_key_id: int | None = None
    provider_id: int | None = None
    model_id: int | None = None
    matches_nothing: bool = False


REQUESTS, ERRORS, COST = (SUM_COLUMNS.index(c) for c in ("requests", "errors", "cost_usd"))


def _zeros() -> list:
    sums: list = [0] * len(SUM_COLUMNS)
    sums[COST] = Decimal(0)
    return sums


def _add(into: list, values: Sequence) -> None:
    for index, value in enumerate(values):
        into[index] += value or 0


def _totals(sums: Sequence) -> Totals:
    """Sums in SUM_COLUMNS order as Totals (PostgreSQL sums bigints as numeric: int them)."""
    by_name = dict(zip(SUM_COLUMNS, sums, strict=True))
    return Totals(
        requests=int(by_name["requests"]),
        errors=int(by_name["errors"]),
        input_tokens=int(by_name["input_tokens"]),
        cached_tokens=int(by_name["cached_tokens"]),
        output_tokens=int(by_name["output_tokens"]),
        cost_usd=Decimal(by_name["cost_usd"]),
        latency_total_ms=int(by_name["latency_total_ms"]),
        latency_buckets=tuple(int(by_name[column]) for column in LATENCY_COLUMNS),
    )


@dataclass(frozen=True, slots=True)
class Totals:
    """Sums over rollups: `requests` are successful attempts, `errors` every other outcome."""

    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    latency_total_ms: int = 0
    latency_buckets: tuple[int, ...] = (0,) * len(LATENCY_COLUMNS)

    @property
    def attempts(self) -> int:
        return self.requests + self.errors

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.cached_tokens + self.output_tokens

    @property
    def error_rate(self) -> Decimal | None:
        """Errors per attempt, in percent (one decimal), or None without attempts."""
        if not self.attempts:
            return None
        return (Decimal(self.errors * 100) / self.attempts).quantize(Decimal("0.1"))

    @property
    def avg_latency_ms(self) -> int | None:
        return round(self.latency_total_ms / self.attempts) if self.attempts else None

    def latency_percentile(self, fraction: float) -> Percentile | None:
        return latency_percentile(self.latency_buckets, fraction)


@dataclass(frozen=True, slots=True)
class Percentile:
    """A latency read off the histogram: exactly which bucket (`low_ms`, `high_ms`] holds
    it, and an estimate `ms` interpolated inside that bucket. The last bucket is open-ended
    (`high_ms` None): nothing can be estimated there, `ms` is None."""

    ms: int | None
    low_ms: int
    high_ms: int | None

    @property
    def above_ms(self) -> int | None:
        return self.low_ms if self.high_ms is None else None


def latency_percentile(buckets: Sequence[int], fraction: float) -> Percentile | None:
    """The `fraction` quantile of attempts counted in LATENCY_BUCKETS_MS buckets, assuming
    latencies spread evenly inside a bucket (the rollups keep no finer detail)."""
    total = sum(buckets)
    if not total:
        return None
    target = fraction * total
    seen = 0
    lower = 0
    for count, upper in zip(buckets, LATENCY_BUCKETS_MS, strict=False):
        if count and seen + count >= target:
            estimate = round(lower + (target - seen) / count * (upper - lower))
            return Percentile(ms=estimate, low_ms=lower, high_ms=upper)
        seen += count
        lower = upper
    return Percentile(ms=None, low_ms=LATENCY_BUCKETS_MS[-1], high_ms=None)


@dataclass(frozen=True, slots=True)
class Point:
    """One bucket of the time series; `start` is the bucket's first hour (UTC)."""

    start: datetime
    requests: int = 0
    errors: int = 0
    cost_usd: Decimal = Decimal(0)

    @property
    def attempts(self) -> int:
        return self.requests + self.errors


@dataclass(frozen=True, slots=True)
class Group:
    """A row of the per-provider or per-model table. `key` is the id (None: none recorded)."""

    key: int | None
    label: str
    totals: Totals
    provider_label: str = ""
    # Tokens per model of this provider, largest first (the stacked "tokens by provider").
    parts: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Option:
    value: int
    label: str


@dataclass(frozen=True, slots=True)
class RecentRequest:
    record: UsageRecord
    provider_label: str
    model_label: str


@dataclass(frozen=True, slots=True)
class Dashboard:
    window: Window
    totals: Totals
    series: list[Point]
    providers: list[Group]
    models: list[Group]
    provider_options: list[Option]
    model_options: list[Option]
    recent: list[RecentRequest]
    # The rollup job's `complete_before` (None: it never ran).
    rolled_up_before: datetime | None
    # Hours from `live_from` to the window's end are summed from raw records, up to now.
    live_from: datetime | None = None
    # Hours from `incomplete_from` to `live_from` come from rollups that may not hold every
    # record yet (the job never ran, or is behind by more than RAW_AT_MOST); None: none.
    incomplete_from: datetime | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return not self.totals.attempts and not self.recent


def names_of(app_label: str, model_name: str, ids: Iterable[int | None]) -> dict[int, str]:
    """`name` by pk of another app's model, in one query.

    Usage rows hold providers and catalog models as plain ids: `usage` may not import
    `providers` or `routing` (they import it, STYLE §1), so the app registry hands their
    models over by name at call time.
    """
    wanted = {pk for pk in ids if pk is not None}
    if not wanted:
        return {}
    model = apps.get_model(app_label, model_name)
    return dict(model.objects.filter(pk__in=wanted).values_list("pk", "name"))


def _label(names: Mapping[int, str], pk: int | None) -> str:
    if pk is None:
        return "(none)"
    return names.get(pk, f"#{pk}")


def rollups_in(*, tenant_id: int, window: Window, scope: Scope) -> QuerySet[HourlyUsage]:
    """The tenant's rollups of the window, narrowed to the scope's end user and API key, from
    the coarsest rollup that has the columns to narrow by (same measures, fewer rows)."""
    hours = {"tenant_id": tenant_id, "hour__gte": window.start, "hour__lt": window.end}
    if scope.end_user_id is not None:
        rollups = UsageRollup.objects.filter(**hours, end_user_id=scope.end_user_id)
        if scope.api_key_id is not None:
            rollups = rollups.filter(api_key_id=scope.api_key_id)
        return rollups
    if scope.api_key_id is not None:
        return APIKeyUsageRollup.objects.filter(**hours, api_key_id=scope.api_key_id)
    return TenantUsageRollup.objects.filter(**hours)


@dataclass(frozen=True, slots=True)
class GroupedRollups:
    """Everything the dashboard draws, summed from the rollups in two queries.

    `pairs`: (provider id, model id, *sums in SUM_COLUMNS order) of every pair in the window,
    whatever the provider and model filters (tables and totals apply those; the filter menus
    list every pair). `series`: (bucket start, requests, errors, cost) per time bucket, of
    the filters' provider and model only. Not one query per (bucket, provider, model): a week
    by the hour was ~2,000 rows of 18 columns, and converting them cost more than the query.
    """

    pairs: list[tuple]
    series: list[tuple]


def grouped_rollups(*, tenant_id: int, window: Window, scope: Scope) -> GroupedRollups:
    rollups = rollups_in(tenant_id=tenant_id, window=window, scope=scope)
    sums = {f"sum_{column}": Sum(column) for column in SUM_COLUMNS}
    pairs = (
        rollups.values("provider_id", "model_id")
        .annotate(**sums)
        .order_by()
        .values_list("provider_id", "model_id", *sums)
    )
    if scope.provider_id is not None:
        rollups = rollups.filter(provider_id=scope.provider_id)
    if scope.model_id is not None:
        rollups = rollups.filter(model_id=scope.model_id)
    bucket = F("hour") if window.bucket == "hour" else Trunc("hour", "day", tzinfo=UTC)
    series = (
        rollups.annotate(bucket=bucket)
        .values("bucket")
        .annotate(r=Sum("requests"), e=Sum("errors"), c=Sum("cost_usd"))
        .order_by()
        .values_list("bucket", "r", "e", "c")
    )
    return GroupedRollups(list(pairs), list(series))


def unrolled_usage(*, tenant_id: int, start: datetime, end: datetime, scope: Scope) -> list[tuple]:
    """(hour, provider id, model id, *sums in SUM_COLUMNS order) of the tenant's records in
    [start, end), narrowed to the scope's end user and API key: what the rollup job will
    store for those hours, summed by its own aggregation. One range scan of the (tenant,
    created_at) index."""
    records = UsageRecord.objects.filter(
        tenant_id=tenant_id, created_at__gte=start, created_at__lt=end
    )
    if scope.end_user_id is not None:
        records = records.filter(end_user_id=scope.end_user_id)
    if scope.api_key_id is not None:
        records = records.filter(api_key_id=scope.api_key_id)
    columns = ("hour", "provider_id", "model_id")
    sums = (f"sum_{column}" for column in AGGREGATES)
    return list(hourly_aggregates(records, columns).values_list(*columns, *sums))


def with_unrolled(
    grouped: GroupedRollups, rows: Sequence[tuple], *, window: Window, scope: Scope
) -> GroupedRollups:
    """`grouped` (rollups) plus unrolled_usage's `rows` (hours the rollups were not read
    for), in GroupedRollups' shapes: every row joins the pairs, the scope's provider and
    model's join the series, and each time bucket stays one entry."""
    if not rows:
        return grouped
    series: dict[datetime, list] = {}
    for bucket, *values in grouped.series:
        _add(series.setdefault(bucket, [0, 0, Decimal(0)]), values)
    pairs = list(grouped.pairs)
    for hour, provider_id, model_id, *sums in rows:
        pairs.append((provider_id, model_id, *sums))
        if scope.provider_id is not None and provider_id != scope.provider_id:
            continue
        if scope.model_id is not None and model_id != scope.model_id:
            continue
        bucket = hour if window.bucket == "hour" else _midnight(hour.astimezone(UTC).date())
        _add(
            series.setdefault(bucket, [0, 0, Decimal(0)]),
            [sums[i] for i in (REQUESTS, ERRORS, COST)],
        )
    return GroupedRollups(pairs, [(bucket, *values) for bucket, values in series.items()])


def recent_since(*, window: Window, series: Sequence[Point]) -> datetime:
    """Where the newest RECENT_REQUESTS matching records start at the latest.

    Walking back over the series' buckets until they hold enough attempts bounds the raw
    read: a selective filter (one end user of a busy tenant) then reads one bucket of the
    (tenant, created_at) index, not the whole period's. The series can only undercount (a
    record written late for an hour already rolled up waits for the next run), which moves
    the bound earlier, never past one of the newest records.
    """
    seen = 0
    for point in reversed(series):
        seen += point.attempts
        if seen >= RECENT_REQUESTS:
            return point.start
    return window.start


def recent_requests(
    *, tenant_id: int, window: Window, scope: Scope, since: datetime
) -> list[UsageRecord]:
    """The newest RECENT_REQUESTS records of the scope in [since, window end): the one raw
    read, a backward walk of the (tenant, created_at) index."""
    records = UsageRecord.objects.filter(
        tenant_id=tenant_id, created_at__gte=since, created_at__lt=window.end
    )
    for column in ("end_user_id", "api_key_id", "provider_id", "model_id"):
        value = getattr(scope, column)
        if value is not None:
            records = records.filter(**{column: value})
    return list(
        records.select_related("end_user", "api_key").order_by("-created_at")[:RECENT_REQUESTS]
    )


@dataclass(frozen=True, slots=True)
class RollupProgress:
    """Where the rollup job stands: rollups of hours before `complete_before` held every
    record when computed; `changed_at` moves whenever the job changes any rollup."""

    complete_before: datetime | None = None
    changed_at: datetime | None = None


def rollup_progress() -> RollupProgress:
    state = UsageRollupState.objects.values_list("complete_before", "updated_at").first()
    return RollupProgress(*state) if state else RollupProgress()


def cached_grouped_rollups(
    *, tenant_id: int, window: Window, scope: Scope, progress: RollupProgress
) -> GroupedRollups:
    """grouped_rollups, cached until the rollup job next changes anything."""
    version = progress.changed_at.isoformat() if progress.changed_at else "never"
    key = (
        f"usage:dashboard:{tenant_id}:{window.start:%Y%m%d%H}:{window.end:%Y%m%d%H}:"
        f"{window.bucket}:{scope.end_user_id}:{scope.api_key_id}:{scope.provider_id}:"
        f"{scope.model_id}:{version}"
    )
    rows = cache.get(key)
    if rows is None:
        rows = grouped_rollups(tenant_id=tenant_id, window=window, scope=scope)
        cache.set(key, rows, CACHE_SECONDS)
    return rows


def has_usage(*, tenant_id: int) -> bool:
    """Whether the tenant ever sent a request (an index probe; retention keeps rollups)."""
    return (
        UsageRecord.objects.filter(tenant_id=tenant_id).exists()
        or TenantUsageRollup.objects.filter(tenant_id=tenant_id).exists()
    )


def unrolled_from(
    *, window: Window, complete_before: datetime | None, now: datetime
) -> tuple[datetime, datetime | None]:
    """Where the window's raw part starts (rollups before it, raw records from it on), and
    where the rollups read may start to lack records (None: they hold every one)."""
    oldest_raw = truncate_to_hour(now) + HOUR - RAW_AT_MOST
    rolled_up = window.start if complete_before is None else max(window.start, complete_before)
    split = min(max(rolled_up, oldest_raw), window.end)
    return split, (rolled_up if rolled_up < split else None)


def usage_dashboard(
    *, tenant_id: int, window: Window, scope: Scope, now: datetime | None = None
) -> Dashboard:
    """Tiles, series, tables and filter menus of the scope's usage in the window: rollups up
    to the rollup job's `complete_before`, raw records after it; plus the recent raw
    requests. Seven queries: rollup state, the grouped rollups' two (none while cached), the
    raw hours' one, recent records, provider names, model names."""
    progress = rollup_progress()
    state = progress.complete_before
    split, incomplete_from = unrolled_from(
        window=window, complete_before=state, now=now or timezone.now()
    )
    if scope.matches_nothing:
        return Dashboard(window, Totals(), _empty_series(window), [], [], [], [], [], state, split)
    grouped = GroupedRollups([], [])
    if split > window.start:
        grouped = cached_grouped_rollups(
            tenant_id=tenant_id, window=replace(window, end=split), scope=scope, progress=progress
        )
    if split < window.end:
        rows = unrolled_usage(tenant_id=tenant_id, start=split, end=window.end, scope=scope)
        grouped = with_unrolled(grouped, rows, window=window, scope=scope)

    all_providers = {row[0] for row in grouped.pairs}
    all_models = {row[1] for row in grouped.pairs}
    # The per-provider, per-model and total figures are sums of the (few) pairs.
    pairs: dict[tuple[int | None, int | None], list] = {}
    for provider_id, model_id, *values in grouped.pairs:
        if scope.provider_id is not None and provider_id != scope.provider_id:
            continue
        if scope.model_id is not None and model_id != scope.model_id:
            continue
        _add(pairs.setdefault((provider_id, model_id), _zeros()), values)

    # PostgreSQL sums integers as numeric: int them.
    by_bucket = {
        bucket: (int(r or 0), int(e or 0), c or Decimal(0)) for bucket, r, e, c in grouped.series
    }
    series = [
        Point(start, *by_bucket[start]) if start in by_bucket else Point(start)
        for start in window.bucket_starts()
    ]
    since = recent_since(window=window, series=series)
    recent = recent_requests(tenant_id=tenant_id, window=window, scope=scope, since=since)

    provider_names = names_of(
        "providers", "Provider", all_providers | {r.provider_id for r in recent}
    )
    model_names = names_of("routing", "CatalogModel", all_models | {r.model_id for r in recent})

    total, by_provider, by_model = _zeros(), {}, {}
    model_provider: dict[int | None, int | None] = {}
    for (provider_id, model_id), sums in pairs.items():
        _add(total, sums)
        _add(by_provider.setdefault(provider_id, _zeros()), sums)
        _add(by_model.setdefault(model_id, _zeros()), sums)
        model_provider.setdefault(model_id, provider_id)

    models = [
        Group(
            key=model_id,
            label=_label(model_names, model_id),
            totals=_totals(sums),
            provider_label=_label(provider_names, model_provider.get(model_id)),
        )
        for model_id, sums in by_model.items()
    ]
    models.sort(key=_biggest_first)
    providers = []
    for provider_id, sums in by_provider.items():
        parts = tuple(
            (group.label, group.totals.tokens)
            for group in models
            if model_provider.get(group.key) == provider_id and group.totals.tokens
        )
        providers.append(
            Group(
                key=provider_id,
                label=_label(provider_names, provider_id),
                totals=_totals(sums),
                parts=tuple(sorted(parts, key=lambda part: -part[1])),
            )
        )
    providers.sort(key=_biggest_first)

    return Dashboard(
        window=window,
        totals=_totals(total),
        series=series,
        providers=providers,
        models=models,
        provider_options=_options(provider_names, all_providers, scope.provider_id),
        model_options=_options(model_names, all_models, scope.model_id),
        recent=[
            RecentRequest(
                record=record,
                provider_label=_label(provider_names, record.provider_id)
                if record.provider_id
                else "",
                model_label=_label(model_names, record.model_id) if record.model_id else "",
            )
            for record in recent
        ],
        rolled_up_before=state,
        live_from=split,
        incomplete_from=incomplete_from,
    )


def _empty_series(window: Window) -> list[Point]:
    return [Point(start) for start in window.bucket_starts()]


def _biggest_first(group: Group) -> tuple:
    return (-group.totals.cost_usd, -group.totals.attempts, group.label)


def _options(names: Mapping[int, str], ids: Iterable[int | None], chosen: int | None) -> list:
    """Menu entries: what the period has, and the chosen id even when it has none of it."""
    values = {pk for pk in ids if pk is not None}
    if chosen is not None:
        values.add(chosen)
    options = [Option(pk, _label(names, pk)) for pk in values]
    return sorted(options, key=lambda option: (option.label.lower(), option.value))
