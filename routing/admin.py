"""Staff admin for the model catalog, routing policies and LLM settings; every edit audited."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from providers.choices import ProviderKind
from routing import services
from routing.catalog import CatalogSourceError
from routing.models import CatalogModel, LLMSettings, RoutingPolicy
from tenants.admin_mixins import AuditedAdminMixin

# Weights that do not add up to 1 still rank, but the score's scale is then off (SPEC §2).
WEIGHT_SUM_TOLERANCE = 0.001


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
        """POST: import the pricing snapshot for every platform provider (the daily job, now)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request):
            raise PermissionDenied
        try:
            diff = services.import_pricing_map(
                source=settings.SWITCHYARD_CATALOG_SNAPSHOT, actor=request.user
            )
        except CatalogSourceError as exc:
            self.message_user(request, f"Nothing imported: {exc}", messages.ERROR)
        else:
            summary = format_html_join(
                "", "{}<br>", ((line,) for line in diff.summary().split("\n"))
            )
            self.message_user(request, summary, messages.SUCCESS)
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
