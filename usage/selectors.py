"""Reads for usage, caps and credits. Tenant-scoped reads take the tenant (or its id)."""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import redis
from django.apps import apps
from django.db.models import (
    BigIntegerField,
    Count,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import TruncDate

from tenants.models import EndUser, Tenant, TenantAPIKey
from usage import counters
from usage.choices import CapScope, Outcome
from usage.limiter import from_units
from usage.models import (
    CreditLedgerEntry,
    SpendingCap,
    TenantUsageRollup,
    UsageRecord,
    UsageRollup,
    UsageRollupState,
)
from usage.money import quantize_usd
from usage.periods import period_bounds

logger = logging.getLogger(__name__)


def spent_between(
    *, tenant_id: int, start: datetime, end: datetime, end_user_external_id: str | None = None
) -> Decimal:
    """Recorded cost of the tenant (or of one of its end users) in [start, end)."""
    records = UsageRecord.objects.filter(
        tenant_id=tenant_id, created_at__gte=start, created_at__lt=end
    )
    if end_user_external_id is not None:
        records = records.filter(
            end_user__external_id=end_user_external_id, end_user__tenant_id=tenant_id
        )
    return records.aggregate(total=Sum("cost_usd"))["total"] or Decimal(0)


def credit_balance(*, tenant_id: int) -> Decimal:
    """The ledger's sum: the balance shown anywhere."""
    return CreditLedgerEntry.objects.filter(tenant_id=tenant_id).aggregate(total=Sum("amount_usd"))[
        "total"
    ] or Decimal(0)


def credit_entries(*, tenant_id: int) -> QuerySet[CreditLedgerEntry]:
    return CreditLedgerEntry.objects.filter(tenant_id=tenant_id).select_related("created_by")


def spending_caps(*, tenant_id: int) -> QuerySet[SpendingCap]:
    return SpendingCap.objects.filter(tenant_id=tenant_id).select_related("end_user")


def usage_records(*, tenant_id: int) -> QuerySet[UsageRecord]:
    return UsageRecord.objects.filter(tenant_id=tenant_id)


def platform_enabled_caps() -> QuerySet[SpendingCap]:
    """Every enabled cap, with the end user's external id: what the gateway snapshot loads."""
    return SpendingCap.objects.filter(is_enabled=True).select_related("end_user")


# --- Usage reports, export and limit status (management API and dashboard pages) ----------

USAGE_GROUPS = ("day", "provider", "model", "end_user", "api_key")
MAX_REPORT_DAYS = 400
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class UsageFilters:
    """Which of a tenant's usage records a report covers: UTC days `start`..`end` inclusive.

    `only_end_user_id` is the caller's restriction (a member sees only their own end user);
    `end_user` is the caller's filter, by the tenant's own external id.
    """

    start: date
    end: date
    end_user: str | None = None
    api_key_id: int | None = None
    provider_id: int | None = None
    model_id: int | None = None
    only_end_user_id: int | None = None


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One group of a usage report: `requests` are successful attempts, `errors` failed ones."""

    key: str | None
    label: str
    requests: int
    errors: int
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    cost_usd: Decimal
    avg_latency_ms: int | None
    latency_total_ms: int = 0


@dataclass(frozen=True, slots=True)
class UsageReport:
    group_by: str
    start: date
    end: date
    results: list[UsageRow]
    totals: UsageRow


def default_report_period(*, tenant: Tenant, now: datetime) -> tuple[date, date]:
    """The current billing month as inclusive UTC days (what a report shows by default)."""
    start, end = period_bounds(tenant.billing_day, now)
    return start.date(), end.date() - timedelta(days=1)


def filtered_usage(*, tenant: Tenant, filters: UsageFilters) -> QuerySet[UsageRecord]:
    """The tenant's usage records matching `filters` (another tenant's ids match nothing)."""
    records = UsageRecord.objects.filter(
        tenant_id=tenant.pk,
        created_at__gte=datetime.combine(filters.start, time.min, tzinfo=UTC),
        created_at__lt=datetime.combine(filters.end + timedelta(days=1), time.min, tzinfo=UTC),
    )
    if filters.only_end_user_id is not None:
        records = records.filter(end_user_id=filters.only_end_user_id)
    if filters.end_user is not None:
        records = records.filter(
            end_user__external_id=filters.end_user, end_user__tenant_id=tenant.pk
        )
    if filters.api_key_id is not None:
        records = records.filter(api_key_id=filters.api_key_id)
    if filters.provider_id is not None:
        records = records.filter(provider_id=filters.provider_id)
    if filters.model_id is not None:
        records = records.filter(model_id=filters.model_id)
    return records


def _names(app_label: str, model_name: str, ids: set[int]) -> dict[int, str]:
    # UsageRecord holds providers and catalog models as plain ids because `usage` may not
    # import `providers` or `routing` (STYLE §1: they import it). The app registry hands
    # over their models by name at call time, without an import, for one lookup per report.
    if not ids:
        return {}
    model = apps.get_model(app_label, model_name)
    return dict(model.objects.filter(pk__in=ids).values_list("pk", "name"))


def _name_subquery(app_label: str, model_name: str, column: str) -> Subquery:
    """The `name` of the row whose pk is `column` (same reason as `_names`), per exported row."""
    model = apps.get_model(app_label, model_name)
    return Subquery(model.objects.filter(pk=OuterRef(column)).values("name")[:1])


def api_key_label(name: str | None, prefix: str | None) -> str:
    return f"{name} ({prefix}…)" if name is not None else ""


def usage_report(*, tenant: Tenant, filters: UsageFilters, group_by: str) -> UsageReport:
    """Requests, errors, tokens, cost and latency of the tenant's usage, grouped.

    Every record is one upstream attempt: a successful attempt counts as a request, any other
    outcome as an error (under the provider that failed), so groups add up to the totals.
    Costs two queries: the grouped sums and, for provider / model / API key, their names.
    """
    if group_by not in USAGE_GROUPS:
        raise ValueError(f"Unknown group: {group_by!r}.")
    expression = {
        "day": TruncDate("created_at", tzinfo=UTC),
        "provider": F("provider_id"),
        "model": F("model_id"),
        "end_user": F("end_user__external_id"),
        "api_key": F("api_key_id"),
    }[group_by]
    succeeded = Q(outcome=Outcome.SUCCESS)
    groups = (
        filtered_usage(tenant=tenant, filters=filters)
        .annotate(group=expression)
        .values("group")
        .annotate(
            n_requests=Count("pk", filter=succeeded),
            n_errors=Count("pk", filter=~succeeded),
            n_attempts=Count("pk"),
            sum_input=Sum("input_tokens"),
            sum_cached=Sum("cached_tokens"),
            sum_output=Sum("output_tokens"),
            sum_cost=Sum("cost_usd"),
            sum_latency=Sum("latency_ms"),
        )
        .order_by()
    )
    groups = list(groups)
    ids = {g["group"] for g in groups if g["group"] is not None}
    if group_by == "provider":
        names = _names("providers", "Provider", ids)
    elif group_by == "model":
        names = _names("routing", "CatalogModel", ids)
    elif group_by == "api_key":
        names = {
            pk: api_key_label(name, prefix)
            for pk, name, prefix in TenantAPIKey.objects.filter(
                tenant_id=tenant.pk, pk__in=ids
            ).values_list("pk", "name", "prefix")
        }
    else:
        names = {}

    results = [_usage_row(g, group_by, names) for g in groups]
    if group_by == "day":
        results.sort(key=lambda row: row.key or "")
    else:
        results.sort(key=lambda row: (-row.cost_usd, -row.requests, row.key or ""))
    return UsageReport(group_by, filters.start, filters.end, results, _usage_totals(results))


def _usage_row(group: dict, group_by: str, names: Mapping[int, str]) -> UsageRow:
    value = group["group"]
    if value is None:
        key, label = None, "(none)"
    elif group_by == "day":
        key = label = value.isoformat()
    elif group_by == "end_user":
        key = label = value
    else:
        key, label = str(value), names.get(value, f"#{value}")
    attempts = group["n_attempts"]
    latency = group["sum_latency"] or 0
    return UsageRow(
        key=key,
        label=label,
        requests=group["n_requests"],
        errors=group["n_errors"],
        input_tokens=group["sum_input"] or 0,
        cached_tokens=group["sum_cached"] or 0,
        output_tokens=group["sum_output"] or 0,
        cost_usd=group["sum_cost"] or Decimal(0),
        avg_latency_ms=round(latency / attempts) if attempts else None,
        latency_total_ms=latency,
    )


def _usage_totals(rows: Sequence[UsageRow]) -> UsageRow:
    attempts = sum(row.requests + row.errors for row in rows)
    latency = sum(row.latency_total_ms for row in rows)
    return UsageRow(
        key=None,
        label="Total",
        requests=sum(row.requests for row in rows),
        errors=sum(row.errors for row in rows),
        input_tokens=sum(row.input_tokens for row in rows),
        cached_tokens=sum(row.cached_tokens for row in rows),
        output_tokens=sum(row.output_tokens for row in rows),
        cost_usd=sum((row.cost_usd for row in rows), Decimal(0)),
        avg_latency_ms=round(latency / attempts) if attempts else None,
        latency_total_ms=latency,
    )


EXPORT_COLUMNS = (
    "created_at",
    "request_id",
    "attempt",
    "end_user",
    "api_key",
    "provider",
    "model",
    "power_level",
    "outcome",
    "http_status",
    "stream",
    "estimated",
    "input_tokens",
    "cached_tokens",
    "output_tokens",
    "cost_usd",
    "latency_ms",
    "ttft_ms",
    "error",
)


def usage_export(*, tenant: Tenant, filters: UsageFilters) -> QuerySet:
    """The matching records, oldest first, as named rows with the names joined in.

    For a long export iterate with `.iterator(chunk_size=...)` (a server-side cursor).
    """
    return (
        filtered_usage(tenant=tenant, filters=filters)
        .annotate(
            end_user_external_id=F("end_user__external_id"),
            api_key_name=F("api_key__name"),
            api_key_prefix=F("api_key__prefix"),
            provider_name=_name_subquery("providers", "Provider", "provider_id"),
            model_name=_name_subquery("routing", "CatalogModel", "model_id"),
        )
        .order_by("created_at", "pk")
        .values_list(
            "created_at",
            "request_id",
            "attempt",
            "end_user_external_id",
            "api_key_name",
            "api_key_prefix",
            "provider_id",
            "provider_name",
            "model_id",
            "model_name",
            "power_level",
            "outcome",
            "http_status",
            "is_stream",
            "is_estimated",
            "input_tokens",
            "cached_tokens",
            "output_tokens",
            "cost_usd",
            "latency_ms",
            "ttft_ms",
            "error",
            named=True,
        )
    )


# name, Plan field, period (ms), unit: the gateway's limits (routing/gateway/limits.py), whose
# GCRA state lives under counters.rate_limit_key(tenant_id, name, limit).
PLAN_RATE_LIMITS = (
    ("requests-minute", "requests_per_minute", 60_000, "requests"),
    ("requests-hour", "requests_per_hour", 3_600_000, "requests"),
    ("requests-day", "requests_per_day", 86_400_000, "requests"),
    ("tokens-minute", "tokens_per_minute", 60_000, "tokens"),
)
KEY_RATE_LIMIT = ("key-requests-minute", 60_000, "requests")
# Upper bounds (percent used, exclusive) of the levels below "critical".
LEVELS = ((50, "healthy"), (80, "normal"), (95, "warning"))


def usage_level(used: Decimal | int, limit: Decimal | int) -> str:
    """healthy < 50 % used ≤ normal < 80 % ≤ warning < 95 % ≤ critical (exact, no floats)."""
    for percent, level in LEVELS:
        if used * 100 < limit * percent:
            return level
    return "critical"


def _epoch_ms(now: datetime) -> int:
    return (now - EPOCH) // timedelta(milliseconds=1)


def _rate_entry(
    name: str, unit: str, period_ms: int, limit: int, tat: bytes | None, now_ms: int
) -> dict:
    """A GCRA limit's state: the key holds the theoretical arrival time (TAT) in ms; each unit
    moves it on by period/limit, so TAT - now is how much of the period is used up."""
    ahead = max(Decimal(0), Decimal(tat.decode()) - now_ms) if tat else Decimal(0)
    ahead = min(ahead, Decimal(period_ms))  # a settled token overrun can push TAT past a period
    remaining = max(0, math.floor((period_ms - ahead) * limit / period_ms))
    return {
        "kind": "rate",
        "name": name,
        "unit": unit,
        "period_seconds": period_ms // 1000,
        "limit": limit,
        "used": limit - remaining,
        "remaining": remaining,
        "reset_seconds": math.ceil(ahead / 1000),
        "level": usage_level(ahead, period_ms),
        "unavailable": False,
    }


def _unavailable_entry(name: str, unit: str, period_ms: int, limit: int) -> dict:
    return {
        "kind": "rate",
        "name": name,
        "unit": unit,
        "period_seconds": period_ms // 1000,
        "limit": limit,
        "used": None,
        "remaining": None,
        "reset_seconds": None,
        "level": None,
        "unavailable": True,
    }


def limit_status(
    *,
    tenant: Tenant,
    api_key: TenantAPIKey | None = None,
    end_user: EndUser | None = None,
    now: datetime,
) -> list[dict]:
    """Where the tenant stands against each of its limits, as plain dicts (`kind` tells them
    apart): the plan's rate limits and the key's own (from the gateway's GCRA state in Redis),
    the tenant's spending cap and `end_user`'s (their cap, or the each-user default), and the
    credit balance on a prepaid plan.

    One Redis round trip; when Redis cannot be reached the rate limits say `unavailable` and
    spending falls back to the database.
    """
    plan = tenant.plan
    rates = [
        (name, unit, period, getattr(plan, field))
        for name, field, period, unit in PLAN_RATE_LIMITS
        if getattr(plan, field)
    ]
    rate_keys = [counters.rate_limit_key(tenant.pk, name, limit) for name, _, _, limit in rates]
    if api_key is not None and api_key.requests_per_minute:
        name, period, unit = KEY_RATE_LIMIT
        rates.append((name, unit, period, api_key.requests_per_minute))
        rate_keys.append(counters.api_key_rate_limit_key(api_key.pk, api_key.requests_per_minute))

    start, end = period_bounds(tenant.billing_day, now)
    caps = _caps_for(tenant=tenant, end_user=end_user)
    spent_keys = [counters.budget_keys(kind, who, start.date())[0] for kind, who, _, _ in caps]
    try:
        values = (
            counters.sync_client().mget(rate_keys + spent_keys) if rate_keys or spent_keys else []
        )
    except (redis.RedisError, OSError):
        logger.warning("limits.status_unavailable", extra={"tenant_id": tenant.pk})
        values = None

    now_ms = _epoch_ms(now)
    entries = []
    for index, (name, unit, period, limit) in enumerate(rates):
        if values is None:
            entries.append(_unavailable_entry(name, unit, period, limit))
        else:
            entries.append(_rate_entry(name, unit, period, limit, values[index], now_ms))

    reset_seconds = math.ceil((end - now).total_seconds())
    counters_read = values[len(rates) :] if values is not None else [None] * len(caps)
    recorded = None  # read once, and only when a counter is missing
    for (_kind, _who, cap, external_id), counter in zip(caps, counters_read, strict=True):
        if counter is not None:
            spent = from_units(int(counter))
        else:
            if recorded is None:
                users = [end_user.pk] if end_user is not None else []
                recorded = period_spend(
                    tenant_id=tenant.pk, start=start, end=end, end_user_ids=users
                )
            if external_id is None:
                spent = recorded.total_usd
            else:
                spent = recorded.by_end_user.get(end_user.pk, Decimal(0))
        entries.append(
            {
                "kind": "spending_cap",
                "name": "spending-cap-end-user" if external_id else "spending-cap-tenant",
                "mode": cap.mode,
                "cap_usd": cap.amount_usd,
                "spent_usd": quantize_usd(spent),
                "remaining_usd": max(Decimal(0), cap.amount_usd - spent),
                "period_start": start.date(),
                "period_end": end.date(),
                "reset_seconds": reset_seconds,
                "level": usage_level(spent, cap.amount_usd),
            }
        )

    if plan.prepaid:
        balance = credit_balance(tenant_id=tenant.pk)
        entries.append(
            {
                "kind": "credits",
                "name": "credits",
                "balance_usd": balance,
                "level": "healthy" if balance > 0 else "critical",
            }
        )
    return entries


def _caps_for(
    *, tenant: Tenant, end_user: EndUser | None
) -> list[tuple[str, str, SpendingCap, str | None]]:
    """(counter kind, counter owner, cap, end user's external id) of the caps that apply,
    chosen as the gateway chooses them: an end user's own cap, else the each-user default."""
    wanted = Q(scope=CapScope.TENANT)
    if end_user is not None:
        wanted |= Q(scope=CapScope.EACH_USER) | Q(scope=CapScope.USER, end_user_id=end_user.pk)
    by_scope = {
        cap.scope: cap
        for cap in SpendingCap.objects.filter(tenant_id=tenant.pk, is_enabled=True).filter(wanted)
    }
    caps: list[tuple[str, str, SpendingCap, str | None]] = []
    if CapScope.TENANT in by_scope:
        caps.append(("t", str(tenant.pk), by_scope[CapScope.TENANT], None))
    if end_user is not None:
        cap = by_scope.get(CapScope.USER) or by_scope.get(CapScope.EACH_USER)
        if cap is not None:
            who = f"{tenant.pk}:{end_user.external_id}"
            caps.append(("u", who, cap, end_user.external_id))
    return caps


# --- Spend in a billing period (spending alerts) ------------------------------------------


@dataclass(frozen=True, slots=True)
class PeriodSpend:
    """A tenant's recorded cost in a period, in total and per end user (by id)."""

    total_usd: Decimal
    by_end_user: dict[int, Decimal]


# The parts of period_spend's one query, told apart by a constant column.
_TENANT_ROLLUP, _USER_ROLLUPS, _RECORDS = 0, 1, 2


def _cost_by(queryset: QuerySet, part: int, column: str | None) -> QuerySet:
    """(part, `column` or NULL, cost) rows of `queryset` summed per `column`."""
    who = F(column) if column else Value(None, output_field=BigIntegerField())
    return (
        queryset.annotate(part=Value(part), who=who)
        .values("part", "who")
        .annotate(total=Sum("cost_usd"))
        .order_by()
        .values_list("part", "who", "total")
    )


def period_spend(
    *,
    tenant_id: int,
    start: datetime,
    end: datetime,
    end_user_ids: Collection[int] | None = None,
) -> PeriodSpend:
    """The tenant's recorded cost in [start, end) (whole hours), in total and per end user:
    every end user, or only those of `end_user_ids` (none: the total only).

    Hours the rollup job has completed are read from rollups (the total from the tenant
    rollup, an end user's by the (tenant, end user, hour) index) and only the rest from raw
    records, so neither a check every few minutes nor a page re-reads the month's records. A
    record written late for a completed hour counts from the next rollup run. Two queries:
    the rollup state, whose literal hour the planner needs to choose its indexes, then the
    parts in one UNION ALL.
    """
    complete_before = UsageRollupState.objects.values_list("complete_before", flat=True).first()
    split = min(max(complete_before or start, start), end)
    parts = []
    if split > start:
        hours = {"tenant_id": tenant_id, "hour__gte": start, "hour__lt": split}
        parts.append(_cost_by(TenantUsageRollup.objects.filter(**hours), _TENANT_ROLLUP, None))
        if end_user_ids is None or end_user_ids:
            users = UsageRollup.objects.filter(**hours)
            if end_user_ids is not None:
                users = users.filter(end_user_id__in=end_user_ids)
            parts.append(_cost_by(users, _USER_ROLLUPS, "end_user_id"))
    if end > split:
        records = UsageRecord.objects.filter(
            tenant_id=tenant_id, created_at__gte=split, created_at__lt=end
        )
        parts.append(_cost_by(records, _RECORDS, "end_user_id"))
    total = Decimal(0)
    by_end_user: dict[int, Decimal] = {}
    for part, end_user_id, cost in parts[0].union(*parts[1:], all=True) if parts else ():
        cost = cost or Decimal(0)
        if part != _USER_ROLLUPS:
            total += cost
        wanted = end_user_ids is None or end_user_id in end_user_ids  # raw rows: every user
        if part != _TENANT_ROLLUP and end_user_id is not None and wanted:
            by_end_user[end_user_id] = by_end_user.get(end_user_id, Decimal(0)) + cost
    return PeriodSpend(total_usd=total, by_end_user=by_end_user)


# --- Spending page ------------------------------------------------------------------------


def alerts_for(*, tenant: Tenant, end_user_id: int | None, whole_tenant: bool) -> QuerySet:
    """The tenant's alerts, newest first: all of them for a whole-tenant reader; otherwise
    those about the tenant itself and those about `end_user_id` (None: the tenant's only)."""
    alerts = tenant.alerts.select_related("end_user")
    if not whole_tenant:
        about = Q(end_user__isnull=True)
        if end_user_id is not None:
            about |= Q(end_user_id=end_user_id)
        alerts = alerts.filter(about)
    return alerts.order_by("-created_at", "-pk")


def end_user_caps(*, tenant_id: int) -> QuerySet[SpendingCap]:
    """The tenant's caps of single end users, by the end user's id."""
    return (
        SpendingCap.objects.filter(tenant_id=tenant_id, scope=CapScope.USER)
        .select_related("end_user")
        .order_by("end_user__external_id", "pk")
    )


def get_end_user_cap(*, tenant_id: int, cap_id: int) -> SpendingCap:
    """The tenant's cap of one end user, or SpendingCap.DoesNotExist (another tenant's too)."""
    return end_user_caps(tenant_id=tenant_id).get(pk=cap_id)


def end_user_cap_spend(
    *, tenant: Tenant, caps: Sequence[SpendingCap], now: datetime
) -> dict[int, Decimal]:
    """This billing period's spend of each cap's end user, by end-user id.

    Read from the gateway's live counters in one Redis round trip; an end user without a
    counter (none seeded yet, or Redis unreachable) is read from the database, once for all
    of them (period_spend: rollups, then the records newer than they are).
    """
    start, end = period_bounds(tenant.billing_day, now)
    users = [cap.end_user for cap in caps if cap.end_user is not None]
    keys = [
        counters.budget_keys("u", f"{tenant.pk}:{user.external_id}", start.date())[0]
        for user in users
    ]
    try:
        values = counters.sync_client().mget(keys) if keys else []
    except (redis.RedisError, OSError):
        logger.warning("limits.status_unavailable", extra={"tenant_id": tenant.pk})
        values = [None] * len(keys)
    spent: dict[int, Decimal] = {}
    missing = []
    for user, value in zip(users, values, strict=True):
        if value is None:
            missing.append(user.pk)
        else:
            spent[user.pk] = quantize_usd(from_units(int(value)))
    if missing:
        recorded = period_spend(
            tenant_id=tenant.pk, start=start, end=end, end_user_ids=missing
        ).by_end_user
        for pk in missing:
            spent[pk] = quantize_usd(recorded.get(pk, Decimal(0)))
    return spent
