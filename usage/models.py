from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

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

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "dedupe_key"], name="%(app_label)s_%(class)s_once_per_key"
            )
        ]

    def __str__(self) -> str:
        return self.message
