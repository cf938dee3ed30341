from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Coalesce

from tenants.models import EndUser, Tenant, TenantAPIKey
from usage.choices import (
    DEFAULT_THRESHOLDS,
    AlertKind,
    CapMode,
    CapScope,
    KeySource,
    LedgerKind,
    Outcome,
    PowerLevelCode,
)

MONEY = {"max_digits": 18, "decimal_places": 8}


def default_thresholds() -> list[int]:
    return list(DEFAULT_THRESHOLDS)


class UsageRecord(models.Model):
    """One upstream attempt: ids, counts, cost and timings; never prompt or completion text.

    Kept lean (target ≤ 0.5 KB a row with indexes): foreign keys are plain integer columns
    without database constraints so the batch writer never waits on a lock of a parent row,
    and enums are small integers.
    """

    created_at = models.DateTimeField(db_index=False)
    # No single-column indexes: (tenant, created_at) serves every read of raw rows; per-user
    # and per-key views read the hourly rollups. Each index would add ~20 bytes a row.
    tenant = models.ForeignKey(
        Tenant, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    end_user = models.ForeignKey(
        EndUser,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        null=True,
        blank=True,
        related_name="+",
    )
    api_key = models.ForeignKey(
        TenantAPIKey,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        null=True,
        blank=True,
        related_name="+",
    )
    request_id = models.UUIDField()
    attempt = models.PositiveSmallIntegerField(default=1)
    # Provider and catalog model live in other apps that import this one; plain ids keep
    # `usage` free of them (STYLE §1) and the row small.
    provider_id = models.IntegerField(null=True, blank=True)
    model_id = models.IntegerField(null=True, blank=True, help_text="Catalog model id.")
    key_source = models.PositiveSmallIntegerField(choices=KeySource.choices, null=True, blank=True)
    power_level = models.PositiveSmallIntegerField(choices=PowerLevelCode.choices, default=0)
    outcome = models.PositiveSmallIntegerField(choices=Outcome.choices)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    is_stream = models.BooleanField(default=False)
    is_estimated = models.BooleanField(
        default=False, help_text="Tokens counted by us, not reported."
    )
    input_tokens = models.PositiveIntegerField(default=0, help_text="Uncached input tokens.")
    cached_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(**MONEY, default=Decimal(0))
    latency_ms = models.PositiveIntegerField(default=0)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=200, blank=True, help_text="Short and redacted.")

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "created_at"], name="usage_record_tenant_time"),
        ]

    def __str__(self) -> str:
        return f"{self.request_id}#{self.attempt}"

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.cached_tokens + self.output_tokens


class SpendingCap(models.Model):
    """A monthly spending limit for a tenant, for each of its end users, or for one end user."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="spending_caps")
    scope = models.CharField(max_length=10, choices=CapScope.choices, default=CapScope.TENANT)
    end_user = models.ForeignKey(
        EndUser, on_delete=models.CASCADE, null=True, blank=True, related_name="spending_caps"
    )
    amount_usd = models.DecimalField(
        max_digits=14, decimal_places=2, validators=[MinValueValidator(Decimal(0))]
    )
    mode = models.CharField(max_length=4, choices=CapMode.choices, default=CapMode.HARD)
    alert_thresholds = models.JSONField(
        default=default_thresholds, blank=True, help_text="Percent of the cap."
    )
    is_enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(scope=CapScope.USER, end_user__isnull=False)
                | (~Q(scope=CapScope.USER) & Q(end_user__isnull=True)),
                name="%(app_label)s_%(class)s_end_user_iff_user_scope",
            ),
            models.UniqueConstraint(
                fields=["tenant", "scope"],
                condition=~Q(scope=CapScope.USER),
                name="%(app_label)s_%(class)s_one_per_tenant_scope",
            ),
            models.UniqueConstraint(
                fields=["tenant", "end_user"],
                condition=Q(scope=CapScope.USER),
                name="%(app_label)s_%(class)s_one_per_end_user",
            ),
        ]

    def __str__(self) -> str:
        who = self.end_user or self.get_scope_display()
        return f"{self.tenant}: {who} ${self.amount_usd} ({self.mode})"

    def is_reached(self, spent_usd: Decimal) -> bool:
        return spent_usd >= self.amount_usd


class CreditLedgerEntry(models.Model):
    """A signed movement of a tenant's prepaid credits. Append-only; balance = sum."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="credit_entries")
    created_at = models.DateTimeField(auto_now_add=True)
    kind = models.CharField(max_length=14, choices=LedgerKind.choices)
    amount_usd = models.DecimalField(
        **MONEY, help_text="Positive adds credits, negative spends them."
    )
    reason = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        verbose_name_plural = "credit ledger entries"
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["tenant", "created_at"], name="usage_ledger_tenant_time")]

    def __str__(self) -> str:
        return f"{self.tenant} {self.amount_usd:+} ({self.kind})"


class Alert(models.Model):
    """A notice to a tenant: a spending threshold crossed, a key found invalid."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="alerts")
    end_user = models.ForeignKey(
        EndUser, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    kind = models.CharField(max_length=20, choices=AlertKind.choices)
    threshold = models.PositiveSmallIntegerField(null=True, blank=True)
    period_start = models.DateField(null=True, blank=True)
    dedupe_key = models.CharField(
        max_length=120, help_text="One alert per (tenant, key): threshold, period, subject."
    )
    message = models.CharField(max_length=300)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)
    notified_at = models.DateTimeField(
        null=True, blank=True, help_text="When the email went out and the webhook was queued."
    )
    webhook_delivered_at = models.DateTimeField(
        null=True, blank=True, help_text="When the tenant's webhook answered 2xx."
    )
    webhook_attempts = models.PositiveSmallIntegerField(default=0)
    webhook_error = models.CharField(
        max_length=200, blank=True, help_text="Why the last webhook attempt failed."
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "dedupe_key"], name="%(app_label)s_%(class)s_once_per_key"
            )
        ]

    def __str__(self) -> str:
        return self.message


# Upper bounds (ms, inclusive) of UsageRollup's latency buckets; the last bucket is above 10 s.
LATENCY_BUCKETS_MS = (100, 250, 500, 1000, 2500, 5000, 10000)


class HourlyUsage(models.Model):
    """What both hourly rollups hold: an hour of a tenant's usage per provider and model.

    Like a usage report, `requests` counts successful attempts and `errors` every other
    outcome (requests + errors = attempts); tokens, cost and latency cover every attempt. The
    latency buckets are not cumulative: an attempt counts in the one bucket whose range
    (previous bound, bound] holds its latency, so buckets add up in SQL like any column.
    """

    hour = models.DateTimeField(help_text="Start of the UTC hour.")
    # No database constraints and no single-column indexes, as on UsageRecord: the unique
    # index of each rollup leads with (tenant, hour), which is how every reader filters.
    tenant = models.ForeignKey(
        Tenant, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    provider_id = models.IntegerField(null=True, blank=True)
    model_id = models.IntegerField(null=True, blank=True, help_text="Catalog model id.")
    requests = models.PositiveIntegerField(default=0, help_text="Successful attempts.")
    errors = models.PositiveIntegerField(default=0, help_text="Attempts with any other outcome.")
    input_tokens = models.PositiveBigIntegerField(default=0, help_text="Uncached input tokens.")
    cached_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cost_usd = models.DecimalField(**MONEY, default=Decimal(0))
    latency_total_ms = models.PositiveBigIntegerField(
        default=0, help_text="Sum over all attempts (average = total / attempts)."
    )
    latency_le_100 = models.PositiveIntegerField(default=0, help_text="Attempts ≤ 100 ms.")
    latency_le_250 = models.PositiveIntegerField(default=0, help_text="Attempts 101-250 ms.")
    latency_le_500 = models.PositiveIntegerField(default=0, help_text="Attempts 251-500 ms.")
    latency_le_1000 = models.PositiveIntegerField(default=0, help_text="Attempts 501-1000 ms.")
    latency_le_2500 = models.PositiveIntegerField(default=0, help_text="Attempts 1001-2500 ms.")
    latency_le_5000 = models.PositiveIntegerField(default=0, help_text="Attempts 2501-5000 ms.")
    latency_le_10000 = models.PositiveIntegerField(default=0, help_text="Attempts 5001-10000 ms.")
    latency_gt_10000 = models.PositiveIntegerField(default=0, help_text="Attempts > 10000 ms.")

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.hour:%Y-%m-%d %H}:00"

    @property
    def attempts(self) -> int:
        return self.requests + self.errors


class UsageRollup(HourlyUsage):
    """An hour of a tenant's usage per end user, API key, provider and model (dashboards).

    Recomputed from raw records (usage.rollups); only an hour whose raw records retention
    has deleted is added to, once per late record.
    """

    end_user = models.ForeignKey(
        EndUser,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        null=True,
        blank=True,
        related_name="+",
    )
    api_key = models.ForeignKey(
        TenantAPIKey,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        constraints = [
            # NULL means "none" (no end user, no key, the attempt never reached a provider).
            # COALESCE makes those groups unique too, on PostgreSQL and on SQLite alike
            # (`nulls_distinct=False` would silently create no constraint on SQLite).
            models.UniqueConstraint(
                "tenant",
                "hour",
                Coalesce("end_user", 0, output_field=models.BigIntegerField()),
                Coalesce("api_key", 0, output_field=models.BigIntegerField()),
                Coalesce("provider_id", 0, output_field=models.IntegerField()),
                Coalesce("model_id", 0, output_field=models.IntegerField()),
                name="%(app_label)s_%(class)s_one_row_per_group",
            )
        ]
        indexes = [
            models.Index(fields=["hour"], name="usage_rollup_hour"),
            # One end user's hours without reading the rest of the tenant's (a member's
            # dashboard, an end user's spend): (tenant, hour) would read them all. One key's
            # hours are in APIKeyUsageRollup.
            models.Index(fields=["tenant", "end_user", "hour"], name="usage_rollup_user_hour"),
        ]


class TenantUsageRollup(HourlyUsage):
    """An hour of a tenant's usage per provider and model: its UsageRollup rows summed over
    end users and API keys.

    What a whole-tenant dashboard reads: a busy tenant has hundreds of end users an hour, so
    this holds a few hundredth of UsageRollup's rows. Always recomputed from UsageRollup in
    the transaction that changed it (usage.rollups), so the two agree.
    """

    class Meta:
        constraints = [
            models.UniqueConstraint(
                "tenant",
                "hour",
                Coalesce("provider_id", 0, output_field=models.IntegerField()),
                Coalesce("model_id", 0, output_field=models.IntegerField()),
                name="%(app_label)s_%(class)s_one_row_per_group",
            )
        ]


class APIKeyUsageRollup(HourlyUsage):
    """An hour of a tenant's usage per API key, provider and model: its UsageRollup rows
    summed over end users.

    What a dashboard narrowed to one key reads. A key often serves every end user of a
    tenant, so reading its hours from UsageRollup would read nearly all the tenant's rows.
    Recomputed from UsageRollup with TenantUsageRollup.
    """

    api_key = models.ForeignKey(
        TenantAPIKey,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        verbose_name = "API key usage rollup"
        constraints = [
            models.UniqueConstraint(
                "tenant",
                "hour",
                Coalesce("api_key", 0, output_field=models.BigIntegerField()),
                Coalesce("provider_id", 0, output_field=models.IntegerField()),
                Coalesce("model_id", 0, output_field=models.IntegerField()),
                name="%(app_label)s_%(class)s_one_row_per_group",
            )
        ]


class UsageRollupState(models.Model):
    """Where the rollup job stands: which records it has rolled up, which hours are final.

    One row. Records are found by id (ids grow with every insert), so a record written late
    for an old hour is still rolled up; every id range is scanned twice, a while apart, so a
    batch whose transaction was still open at the first scan is caught by the second.
    """

    settled_through_id = models.PositiveBigIntegerField(
        default=0, help_text="Records up to this id are rolled up (scanned twice)."
    )
    scanned_through_id = models.PositiveBigIntegerField(
        default=0, help_text="Records up to this id have been rolled up at least once."
    )
    scanned_at = models.DateTimeField(
        null=True, blank=True, help_text="When the run that scanned them started."
    )
    complete_before = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Rollups of earlier hours held every record when last computed; readers take "
        "rollups before this hour and raw records after it.",
    )
    purged_before = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Retention deletes raw records before this hour, so their rollups are final: "
        "never recomputed (a record still written for one is added to it).",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "usage rollup state"

    def __str__(self) -> str:
        return f"rolled up through record {self.settled_through_id}"
