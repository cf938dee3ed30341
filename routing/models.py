from __future__ import annotations

from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from providers.models import Provider
from routing.choices import ModelMode, PowerLevel
from tenants.models import EndUser, Tenant

PRICE = {"max_digits": 14, "decimal_places": 6, "default": Decimal(0)}
UNIT = [MinValueValidator(0.0), MaxValueValidator(1.0)]


class CatalogModel(models.Model):
    """A model a provider serves, with its prices per 1M tokens and what it can do."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="models")
    model_id = models.CharField(max_length=200, help_text="The id the provider expects.")
    name = models.CharField(
        max_length=200,
        db_index=True,
        help_text="The name clients use; may repeat across providers.",
    )
    mode = models.CharField(max_length=10, choices=ModelMode.choices, default=ModelMode.CHAT)
    input_price_per_mtok = models.DecimalField(**PRICE, help_text="USD per 1M input tokens.")
    output_price_per_mtok = models.DecimalField(**PRICE, help_text="USD per 1M output tokens.")
    cached_input_price_per_mtok = models.DecimalField(
        **PRICE, help_text="USD per 1M cached input tokens (empty = input price)."
    )
    context_window = models.PositiveIntegerField(default=8192)
    max_output_tokens = models.PositiveIntegerField(default=4096)
    supports_tools = models.BooleanField(default=False)
    supports_vision = models.BooleanField(default=False)
    supports_json = models.BooleanField(default=False)
    quality_score = models.FloatField(
        default=0.5, validators=UNIT, help_text="0-1; set from a heuristic unless overridden."
    )
    quality_overridden = models.BooleanField(
        default=False, help_text="Staff set the quality score; imports leave it alone."
    )
    observed_latency_ms = models.PositiveIntegerField(null=True, blank=True)
    is_enabled = models.BooleanField(default=True)
    is_deprecated = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider__name", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "model_id"], name="%(app_label)s_%(class)s_unique_per_provider"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} @ {self.provider}"

    @property
    def blended_price_per_1k(self) -> Decimal:
        """Mean of input and output price per 1K tokens: what power levels cap."""
        return (self.input_price_per_mtok + self.output_price_per_mtok) / 2 / 1000


class RoutingPolicy(models.Model):
    """How a power level picks models: price cap, score weights, preferred providers."""

    power_level = models.CharField(max_length=10, choices=PowerLevel.choices, unique=True)
    max_price_per_1k = models.DecimalField(
        max_digits=10, decimal_places=6, help_text="USD per 1K tokens (mean of input and output)."
    )
    weight_cost = models.FloatField(validators=UNIT)
    weight_latency = models.FloatField(validators=UNIT)
    weight_quality = models.FloatField(validators=UNIT)
    max_latency_ms = models.PositiveIntegerField(
        default=10_000, help_text="Latency that scores zero in the latency term."
    )
    preferred_provider_kinds = models.JSONField(default=list, blank=True)
    description = models.CharField(max_length=300, blank=True)

    class Meta:
        verbose_name_plural = "routing policies"
        ordering = ["max_price_per_1k"]

    def __str__(self) -> str:
        return self.get_power_level_display()


class LLMSettings(models.Model):
    """Settings at one level: platform (no tenant), tenant, or end user. Empty = inherit."""

    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, null=True, blank=True, related_name="llm_settings"
    )
    end_user = models.ForeignKey(
        EndUser, on_delete=models.CASCADE, null=True, blank=True, related_name="llm_settings"
    )
    power_level = models.CharField(max_length=10, choices=PowerLevel.choices, blank=True)
    preferred_providers = models.ManyToManyField(Provider, blank=True, related_name="+")
    preferred_models = models.JSONField(default=list, blank=True, help_text="Catalog model names.")
    auto_failover = models.BooleanField(null=True, blank=True)
    default_temperature = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.0), MaxValueValidator(2.0)]
    )
    default_max_tokens = models.PositiveIntegerField(null=True, blank=True)
    system_prompt = models.TextField(blank=True, max_length=8000)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "LLM settings"
        verbose_name_plural = "LLM settings"
        constraints = [
            models.UniqueConstraint(
                fields=["tenant"],
                condition=Q(end_user__isnull=True, tenant__isnull=False),
                name="%(app_label)s_%(class)s_one_per_tenant",
            ),
            models.UniqueConstraint(
                fields=["tenant", "end_user"],
                condition=Q(end_user__isnull=False),
                name="%(app_label)s_%(class)s_one_per_end_user",
            ),
            models.CheckConstraint(
                condition=Q(end_user__isnull=True) | Q(tenant__isnull=False),
                name="%(app_label)s_%(class)s_end_user_has_tenant",
            ),
        ]

    def __str__(self) -> str:
        if self.end_user_id:
            return f"settings of {self.end_user}"
        return f"settings of {self.tenant}" if self.tenant_id else "platform settings"


class CatalogSyncRun(models.Model):
    """One catalog sync (daily task, admin button or command): what it read, did, and said."""

    class Status(models.TextChoices):
        OK = "ok", "OK"
        PARTIAL = "partial", "Partial (some providers skipped)"
        FAILED = "failed", "Failed (nothing changed)"

    started_at = models.DateTimeField(db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices)
    triggered_by = models.CharField(
        max_length=150, blank=True, help_text="The staff user, or 'system' for the daily task."
    )
    source = models.TextField(blank=True, help_text="The pricing map and model lists read.")
    added = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    deprecated = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(
        default=0, help_text="Malformed entries passed over (reported in the diff)."
    )
    diff = models.TextField(blank=True, help_text="What changed, in words.")
    error = models.TextField(blank=True, help_text="Why the run failed or was partial.")

    class Meta:
        ordering = ["-started_at", "-pk"]

    def __str__(self) -> str:
        return f"catalog sync #{self.pk} ({self.status})"

    @property
    def changed_catalog(self) -> bool:
        return bool(self.added or self.updated or self.deprecated)

    @property
    def headline(self) -> str:
        """One line for messages: status and counts."""
        counts = (
            f"{self.added} added, {self.updated} updated, {self.deprecated} deprecated, "
            f"{self.skipped} skipped"
        )
        return f"Catalog sync #{self.pk}: {self.get_status_display()}; {counts}."


class CatalogPriceChange(models.Model):
    """A catalog model's prices before and after a sync changed them (USD per 1M tokens)."""

    catalog_model = models.ForeignKey(
        CatalogModel, on_delete=models.CASCADE, related_name="price_changes"
    )
    sync_run = models.ForeignKey(
        CatalogSyncRun,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="price_changes",
    )
    changed_at = models.DateTimeField()
    old_input_price_per_mtok = models.DecimalField(**PRICE)
    new_input_price_per_mtok = models.DecimalField(**PRICE)
    old_output_price_per_mtok = models.DecimalField(**PRICE)
    new_output_price_per_mtok = models.DecimalField(**PRICE)
    old_cached_input_price_per_mtok = models.DecimalField(**PRICE)
    new_cached_input_price_per_mtok = models.DecimalField(**PRICE)

    class Meta:
        ordering = ["-changed_at", "-pk"]
        indexes = [
            models.Index(
                fields=["catalog_model", "-changed_at"], name="routing_pricechange_model_time"
            )
        ]

    def __str__(self) -> str:
        return f"price change of {self.catalog_model_id} at {self.changed_at:%Y-%m-%d %H:%M}"
