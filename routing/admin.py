"""Staff admin for the model catalog, routing policies and LLM settings; every edit audited."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from providers.choices import ProviderKind
from routing import services
from routing.catalog_sources import CatalogSourceUnavailable
from routing.models import (
    CatalogModel,
    CatalogPriceChange,
    CatalogSyncRun,
    LLMSettings,
    RoutingPolicy,
)
from tenants.admin_mixins import AuditedAdminMixin, ReadOnlyAdminMixin, admin_link

# Weights that do not add up to 1 still rank, but the score's scale is then off (SPEC §2).
WEIGHT_SUM_TOLERANCE = 0.001
# Lines of a sync's diff in the message after "Sync catalog now"; the run's page has it all.
SYNC_MESSAGE_LINES = 30
# The newest price changes shown on a catalog model's page; the price-change list has all.
PRICE_HISTORY_INLINE_ROWS = 20
SYNC_MESSAGE_LEVELS = {
    CatalogSyncRun.Status.OK: messages.SUCCESS,
    CatalogSyncRun.Status.PARTIAL: messages.WARNING,
    CatalogSyncRun.Status.FAILED: messages.ERROR,
}
PRICE_FIELDS = ("input_price_per_mtok", "output_price_per_mtok", "cached_input_price_per_mtok")


def _price(value) -> str:
    return format(value.normalize(), "f")


def _price_moves(obj: CatalogPriceChange) -> list[str]:
    """ "input 0.15 -> 0.2" for each price that moved."""
    moves = []
    for name in PRICE_FIELDS:
        old, new = getattr(obj, f"old_{name}"), getattr(obj, f"new_{name}")
        if old != new:
            moves.append(f"{name.split('_')[0]} {_price(old)} -> {_price(new)}")
    return moves


class PriceHistoryInline(ReadOnlyAdminMixin, admin.TabularInline):
    """The model's newest price changes (what a sync found), newest first."""

    model = CatalogPriceChange
    verbose_name_plural = f"price history (newest {PRICE_HISTORY_INLINE_ROWS})"
    fields = ["changed_at", "prices", "run"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def get_queryset(self, request):
        newest = (
            super()
            .get_queryset(request)
            .order_by("-changed_at", "-pk")
            .values_list("pk", flat=True)[:PRICE_HISTORY_INLINE_ROWS]
        )
        return CatalogPriceChange.objects.filter(pk__in=list(newest)).select_related("sync_run")

    @admin.display(description="prices (USD / 1M tokens)")
    def prices(self, obj: CatalogPriceChange) -> str:
        return "; ".join(_price_moves(obj)) or "—"

    @admin.display(description="sync run")
    def run(self, obj: CatalogPriceChange):
        return admin_link(obj.sync_run, f"#{obj.sync_run_id}" if obj.sync_run_id else None)


@admin.register(CatalogModel)
class CatalogModelAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Which models can be routed to, at what price, with what abilities and quality?"""

    audit_noun = "catalog_model"
    list_display = [
        "name",
        "provider",
        "model_id",
        "mode",
        "input_price_per_mtok",
        "output_price_per_mtok",
        "cached_input_price_per_mtok",
        "price_per_1k",
        "context_window",
        "capabilities",
        "quality_score",
        "observed_latency_ms",
        "is_enabled",
        "is_deprecated",
    ]
    list_filter = [
        "is_enabled",
        "is_deprecated",
        "mode",
        "supports_tools",
        "supports_vision",
        "supports_json",
        "quality_overridden",
        "provider",
    ]
    list_select_related = ["provider"]
    search_fields = ["name", "model_id", "provider__name", "provider__slug"]
    autocomplete_fields = ["provider"]
    readonly_fields = ["observed_latency_ms", "created_at", "updated_at"]
    actions = ["enable_models", "disable_models"]
    inlines = [PriceHistoryInline]
    fieldsets = [
        (None, {"fields": ["provider", "model_id", "name", "mode", "is_enabled", "is_deprecated"]}),
        (
            "Prices (USD per 1M tokens)",
            {
                "fields": [
                    "input_price_per_mtok",
                    "output_price_per_mtok",
                    "cached_input_price_per_mtok",
                ]
            },
        ),
        (
            "Limits and abilities",
            {
                "fields": [
                    "context_window",
                    "max_output_tokens",
                    "supports_tools",
                    "supports_vision",
                    "supports_json",
                ]
            },
        ),
        (
            "Quality and speed",
            {
                "fields": [
                    "quality_score",
                    "quality_overridden",
                    "observed_latency_ms",
                    "created_at",
                    "updated_at",
                ]
            },
        ),
    ]

    @admin.display(description="$ / 1K (blended)")
    def price_per_1k(self, obj: CatalogModel) -> str:
        return format(obj.blended_price_per_1k.normalize(), "f")

    @admin.display(description="abilities")
    def capabilities(self, obj: CatalogModel):
        names = [
            name
            for name, supported in (
                ("tools", obj.supports_tools),
                ("vision", obj.supports_vision),
                ("json", obj.supports_json),
            )
            if supported
        ]
        if not names:
            return "—"
        return format_html_join(" ", "<code>{}</code>", ((n,) for n in names))

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_sync": self.has_change_permission(request)}
        return super().changelist_view(request, extra_context)

    def get_urls(self):
        sync = path(
            "sync/",
            self.admin_site.admin_view(self.sync_catalog_view),
            name="routing_catalogmodel_sync",
        )
        return [sync, *super().get_urls()]

    def sync_catalog_view(self, request):
        """POST: the daily catalog sync, now (pricing map and every provider's models list)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request):
            raise PermissionDenied
        try:
            run = services.sync_catalog(actor=request.user)
        except CatalogSourceUnavailable as exc:
            run = exc.run
        lines = run.diff.split("\n")
        if len(lines) > SYNC_MESSAGE_LINES:
            lines = [*lines[:SYNC_MESSAGE_LINES], f"... ({len(lines) - SYNC_MESSAGE_LINES} more)"]
        message = format_html(
            "{} {}<br>{}",
            run.headline,
            admin_link(run, "Details"),
            format_html_join("", "{}<br>", ((line,) for line in lines)),
        )
        self.message_user(request, message, SYNC_MESSAGE_LEVELS[run.status])
        return HttpResponseRedirect(reverse("admin:routing_catalogmodel_changelist"))

    @admin.action(description="Enable selected models for routing", permissions=["change"])
    def enable_models(self, request, queryset):
        count = services.set_catalog_models_enabled(
            models=queryset.select_related("provider"), enabled=True, actor=request.user
        )
        self.message_user(request, f"Enabled {count} model(s).", messages.SUCCESS)

    @admin.action(description="Disable selected models", permissions=["change"])
    def disable_models(self, request, queryset):
        count = services.set_catalog_models_enabled(
            models=queryset.select_related("provider"), enabled=False, actor=request.user
        )
        self.message_user(request, f"Disabled {count} model(s).", messages.SUCCESS)


@admin.register(CatalogSyncRun)
class CatalogSyncRunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """When did the catalog last sync, what changed, and which provider could not be read?"""

    list_display = [
        "started_at",
        "status_badge",
        "triggered_by",
        "added",
        "updated",
        "deprecated",
        "skipped",
        "duration",
        "error_short",
    ]
    list_filter = ["status", "triggered_by"]
    search_fields = ["diff", "error", "source"]
    date_hierarchy = "started_at"
    fields = [
        "started_at",
        "finished_at",
        "status",
        "triggered_by",
        "source",
        ("added", "updated", "deprecated", "skipped"),
        "error",
        "diff_text",
    ]
    readonly_fields = [
        "started_at",
        "finished_at",
        "status",
        "triggered_by",
        "source",
        "added",
        "updated",
        "deprecated",
        "skipped",
        "error",
        "diff_text",
    ]

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: CatalogSyncRun):
        colour = {"ok": "#2e7d32", "partial": "#ef6c00", "failed": "#c62828"}[obj.status]
        return format_html('<b style="color:{}">{}</b>', colour, obj.get_status_display())

    @admin.display(description="took")
    def duration(self, obj: CatalogSyncRun) -> str:
        if obj.finished_at is None:
            return "—"
        return f"{(obj.finished_at - obj.started_at).total_seconds():.1f} s"

    @admin.display(description="error")
    def error_short(self, obj: CatalogSyncRun) -> str:
        first = obj.error.split("\n", 1)[0]
        return first if len(first) <= 100 else first[:97] + "..."

    @admin.display(description="diff")
    def diff_text(self, obj: CatalogSyncRun):
        return format_html('<pre style="white-space:pre-wrap">{}</pre>', obj.diff)


@admin.register(CatalogPriceChange)
class CatalogPriceChangeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Which prices moved, when, from what to what? Written by the catalog sync."""

    list_display = ["changed_at", "catalog_model", "provider", "prices", "run"]
    list_filter = ["catalog_model__provider"]
    list_select_related = ["catalog_model__provider", "sync_run"]
    search_fields = ["catalog_model__name", "catalog_model__model_id"]
    date_hierarchy = "changed_at"

    @admin.display(description="provider", ordering="catalog_model__provider__name")
    def provider(self, obj: CatalogPriceChange) -> str:
        return str(obj.catalog_model.provider)

    @admin.display(description="prices (USD / 1M tokens)")
    def prices(self, obj: CatalogPriceChange) -> str:
        return "; ".join(_price_moves(obj)) or "—"

    @admin.display(description="sync run", ordering="sync_run")
    def run(self, obj: CatalogPriceChange):
        return admin_link(obj.sync_run, f"#{obj.sync_run_id}" if obj.sync_run_id else None)


class RoutingPolicyForm(forms.ModelForm):
    preferred_provider_kinds = forms.MultipleChoiceField(
        choices=ProviderKind.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Scored first among equals.",
    )

    class Meta:
        model = RoutingPolicy
        fields = [
            "power_level",
            "max_price_per_1k",
            "weight_cost",
            "weight_latency",
            "weight_quality",
            "max_latency_ms",
            "preferred_provider_kinds",
            "description",
        ]


@admin.register(RoutingPolicy)
class RoutingPolicyAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """What does each power level cost at most, and how does it weigh cost, speed, quality?"""

    audit_noun = "routing_policy"
    form = RoutingPolicyForm
    list_display = [
        "power_level",
        "max_price_per_1k",
        "weight_cost",
        "weight_latency",
        "weight_quality",
        "weight_sum",
        "max_latency_ms",
        "preferred",
        "description",
    ]

    @admin.display(description="sum of weights")
    def weight_sum(self, obj: RoutingPolicy):
        total = obj.weight_cost + obj.weight_latency + obj.weight_quality
        if abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
            return format_html('<span style="color:#c62828">{}</span>', round(total, 3))
        return round(total, 3)

    @admin.display(description="preferred providers")
    def preferred(self, obj: RoutingPolicy) -> str:
        return ", ".join(obj.preferred_provider_kinds or []) or "—"

    def has_delete_permission(self, request, obj=None) -> bool:
        # Routing needs a policy for every level; change it instead.
        return False


class LLMSettingsForm(forms.ModelForm):
    class Meta:
        model = LLMSettings
        fields = [
            "tenant",
            "end_user",
            "power_level",
            "preferred_providers",
            "preferred_models",
            "auto_failover",
            "default_temperature",
            "default_max_tokens",
            "system_prompt",
        ]

    def clean(self):
        cleaned = super().clean()
        tenant = cleaned.get("tenant")
        end_user = cleaned.get("end_user")
        if end_user is not None:
            if tenant is None:
                tenant = cleaned["tenant"] = end_user.tenant
            elif end_user.tenant_id != tenant.pk:
                self.add_error("end_user", "This end user belongs to another tenant.")
        if tenant is None and end_user is None:
            platform = LLMSettings.objects.filter(tenant__isnull=True, end_user__isnull=True)
            if self.instance.pk is not None:
                platform = platform.exclude(pk=self.instance.pk)
            if platform.exists():
                raise forms.ValidationError("Platform settings already exist; change those.")
        return cleaned


class SettingsLevelFilter(admin.SimpleListFilter):
    title = "level"
    parameter_name = "level"

    def lookups(self, request, model_admin):
        return [("platform", "Platform"), ("tenant", "Tenant"), ("end_user", "End user")]

    def queryset(self, request, queryset):
        match self.value():
            case "platform":
                return queryset.filter(tenant__isnull=True)
            case "tenant":
                return queryset.filter(tenant__isnull=False, end_user__isnull=True)
            case "end_user":
                return queryset.filter(end_user__isnull=False)
        return queryset


@admin.register(LLMSettings)
class LLMSettingsAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Who overrides the platform's power level, failover or defaults, and how?"""

    audit_noun = "llm_settings"
    form = LLMSettingsForm
    list_display = [
        "__str__",
        "level",
        "tenant",
        "end_user",
        "power_level",
        "auto_failover",
        "default_temperature",
        "default_max_tokens",
        "preferred_provider_count",
        "updated_at",
    ]
    list_filter = [SettingsLevelFilter, "power_level", "auto_failover"]
    list_select_related = ["tenant", "end_user"]
    search_fields = ["tenant__slug", "tenant__name", "end_user__external_id"]
    autocomplete_fields = ["tenant", "end_user", "preferred_providers"]
    readonly_fields = ["updated_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_preferred=Count("preferred_providers"))

    @admin.display(description="level")
    def level(self, obj: LLMSettings) -> str:
        if obj.end_user_id:
            return "end user"
        return "tenant" if obj.tenant_id else "platform"

    @admin.display(description="preferred providers", ordering="_preferred")
    def preferred_provider_count(self, obj: LLMSettings) -> int:
        return obj._preferred
