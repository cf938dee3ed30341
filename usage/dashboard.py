"""Reads of the usage dashboard: a tenant's usage from the hourly rollups (usage.rollups).

Charts, tiles and tables come from one grouped query over the rollups (by time bucket,
provider and model), so a month of a busy tenant costs one range scan of its rollups, never
a scan of its raw records; its result is cached until the rollup job next runs. The scan
reads the coarsest rollup the filters allow: TenantUsageRollup without an end-user or key
filter (a month of a busy tenant is thousands of rows there, not hundreds of thousands),
APIKeyUsageRollup for one key, UsageRollup (by its end-user index) for one end user. The only
raw read is the list of recent requests: the newest few records by the (tenant, created_at)
index, from a lower bound the rollups give.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.apps import apps
from django.core.cache import cache
from django.db.models import F, QuerySet, Sum
from django.db.models.functions import Trunc

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
SUM_COLUMNS = (
    "requests",
    "errors",
    "input_tokens",
    "cached_tokens",
    "output_tokens",
    "cost_usd",
    "latency_total_ms",
    *LATENCY_COLUMNS,
)


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


COST = SUM_COLUMNS.index("cost_usd")


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
    rolled_up_before: datetime | None
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


def recent_since(
    *, window: Window, series: Sequence[Point], rolled_up_before: datetime | None
) -> datetime:
    """Where the newest RECENT_REQUESTS matching records start at the latest.

    Walking back over the rollups' buckets until they hold enough attempts bounds the raw
    read: a selective filter (one end user of a busy tenant) then reads one bucket of the
    (tenant, created_at) index, not the whole period's. Records newer than the rollups
    (after `rolled_up_before`) are always included.
    """
    since = window.start
    seen = 0
    for point in reversed(series):
        seen += point.attempts
        if seen >= RECENT_REQUESTS:
            since = point.start
            break
    if rolled_up_before is not None:
        since = min(since, max(window.start, rolled_up_before))
    return since


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


def usage_dashboard(*, tenant_id: int, window: Window, scope: Scope) -> Dashboard:
    """Tiles, series, tables and filter menus of the scope's usage in the window, from the
    rollups; plus the recent raw requests. Six queries: rollup state, the grouped rollups'
    two (none while cached), recent records, provider names, model names."""
    progress = rollup_progress()
    state = progress.complete_before
    if scope.matches_nothing:
        return Dashboard(window, Totals(), _empty_series(window), [], [], [], [], [], state)
    grouped = cached_grouped_rollups(
        tenant_id=tenant_id, window=window, scope=scope, progress=progress
    )

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
    since = recent_since(window=window, series=series, rolled_up_before=state)
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
