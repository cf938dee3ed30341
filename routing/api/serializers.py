"""Management API shapes for LLM settings, and staff's catalog and routing policies."""

from __future__ import annotations

from typing import Any, ClassVar

from rest_framework import serializers

from providers.choices import ProviderKind
from providers.models import Provider
from providers.selectors import providers_for
from routing.choices import PowerLevel
from routing.models import CatalogModel, RoutingPolicy
from routing.page_forms import MAX_TOKENS_BOUND

PRICE = {"max_digits": 14, "decimal_places": 6, "coerce_to_string": True}
INHERIT_CHOICES = [("", "Inherit"), *PowerLevel.choices]

# --- LLM settings ---------------------------------------------------------------------------


class _SettingsFields(serializers.Serializer):
    """One level's own values (tenant default or a user's override); empty values inherit.

    A PUT sets every field (those left out become empty: inherit); a PATCH (partial) only
    the fields it names.
    """

    power_level = serializers.ChoiceField(
        choices=INHERIT_CHOICES,
        allow_blank=True,
        required=False,
        help_text="eco, balanced or precision; empty inherits.",
    )
    preferred_providers = serializers.SlugRelatedField(
        many=True,
        slug_field="slug",
        queryset=Provider.objects.none(),
        required=False,
        help_text="Slugs of providers the tenant may use; their models go first in every chain.",
    )
    preferred_models = serializers.ListField(
        child=serializers.CharField(max_length=200),
        required=False,
        help_text="Catalog model names (as GET /v1/models lists them); they go first.",
    )
    auto_failover = serializers.BooleanField(
        allow_null=True,
        required=False,
        help_text="When a model fails, try the next candidate; null inherits.",
    )
    default_temperature = serializers.FloatField(
        min_value=0, max_value=2, allow_null=True, required=False, help_text="0-2; null inherits."
    )
    default_max_tokens = serializers.IntegerField(
        min_value=1,
        max_value=MAX_TOKENS_BOUND,
        allow_null=True,
        required=False,
        help_text="Used when a request sets none; null inherits.",
    )

    # What each field becomes when a PUT leaves it out: inherit.
    EMPTY: ClassVar[dict[str, Any]] = {
        "power_level": "",
        "preferred_providers": [],
        "preferred_models": [],
        "auto_failover": None,
        "default_temperature": None,
        "default_max_tokens": None,
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        tenant = self.context.get("tenant")
        if tenant is not None:
            self.fields["preferred_providers"].child_relation.queryset = providers_for(
                tenant=tenant
            )

    def settings_fields(self) -> dict[str, Any]:
        """The validated values as routing.services.set_llm_settings takes them."""
        values = dict(self.validated_data)
        return values if self.partial else {**self.EMPTY, **values}


class TenantSettingsSerializer(_SettingsFields):
    """The tenant's default: every request of the tenant gets it unless a user overrides it."""

    system_prompt = serializers.CharField(
        max_length=8000,
        allow_blank=True,
        required=False,
        help_text="Put before the messages of every request of the tenant.",
    )

    EMPTY: ClassVar[dict[str, Any]] = {**_SettingsFields.EMPTY, "system_prompt": ""}


class MySettingsSerializer(_SettingsFields):
    """The caller's own override (no system prompt: that is the tenant's)."""


class MySettingsValuesSerializer(serializers.Serializer):
    """One level's stored values; empty ones inherit."""

    power_level = serializers.ChoiceField(choices=INHERIT_CHOICES, allow_blank=True)
    preferred_providers = serializers.ListField(
        child=serializers.CharField(), help_text="Provider slugs."
    )
    preferred_models = serializers.ListField(child=serializers.CharField())
    auto_failover = serializers.BooleanField(allow_null=True)
    default_temperature = serializers.FloatField(allow_null=True)
    default_max_tokens = serializers.IntegerField(allow_null=True)


class TenantSettingsValuesSerializer(MySettingsValuesSerializer):
    system_prompt = serializers.CharField(allow_blank=True)


class EffectiveSettingsSerializer(serializers.Serializer):
    """Settings after inheritance (platform < tenant < user): what a request gets."""

    power_level = serializers.ChoiceField(choices=PowerLevel.choices)
    preferred_providers = serializers.ListField(
        child=serializers.CharField(), help_text="Provider slugs."
    )
    preferred_models = serializers.ListField(child=serializers.CharField())
    auto_failover = serializers.BooleanField()
    default_temperature = serializers.FloatField(allow_null=True)
    default_max_tokens = serializers.IntegerField(allow_null=True)
    system_prompt = serializers.CharField(allow_blank=True)


class TenantSettingsResponseSerializer(serializers.Serializer):
    tenant = TenantSettingsValuesSerializer(help_text="The tenant's own values; empty inherits.")
    tenant_effective = EffectiveSettingsSerializer(
        help_text="The tenant default after inheritance from the platform."
    )
    effective = EffectiveSettingsSerializer(
        help_text="What the caller's own requests get (their override applied, if any)."
    )


class MySettingsResponseSerializer(serializers.Serializer):
    settings = MySettingsValuesSerializer(help_text="The caller's own override; empty inherits.")
    effective = EffectiveSettingsSerializer(help_text="What the caller's requests get.")


# --- staff: catalog models and routing policies ----------------------------------------------


class CatalogModelSerializer(serializers.ModelSerializer):
    provider = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    input_price_per_mtok = serializers.DecimalField(**PRICE, read_only=True)
    output_price_per_mtok = serializers.DecimalField(**PRICE, read_only=True)
    cached_input_price_per_mtok = serializers.DecimalField(**PRICE, read_only=True)

    class Meta:
        model = CatalogModel
        fields = [
            "id",
            "provider",
            "model_id",
            "name",
            "mode",
            "input_price_per_mtok",
            "output_price_per_mtok",
            "cached_input_price_per_mtok",
            "context_window",
            "max_output_tokens",
            "supports_tools",
            "supports_vision",
            "supports_json",
            "quality_score",
            "quality_overridden",
            "observed_latency_ms",
            "is_enabled",
            "is_deprecated",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class CatalogModelUpdateSerializer(serializers.Serializer):
    """What staff change by hand; an import keeps the rest in step with the source."""

    is_enabled = serializers.BooleanField(required=False)
    input_price_per_mtok = serializers.DecimalField(
        max_digits=14, decimal_places=6, min_value=0, required=False, help_text="USD per 1M."
    )
    output_price_per_mtok = serializers.DecimalField(
        max_digits=14, decimal_places=6, min_value=0, required=False, help_text="USD per 1M."
    )
    cached_input_price_per_mtok = serializers.DecimalField(
        max_digits=14, decimal_places=6, min_value=0, required=False, help_text="USD per 1M."
    )
    quality_score = serializers.FloatField(
        min_value=0,
        max_value=1,
        required=False,
        help_text="0-1. Setting it marks the score overridden: imports leave it alone.",
    )
    quality_overridden = serializers.BooleanField(
        required=False,
        help_text="false hands the score back to the heuristic (recomputed now).",
    )

    def validate(self, attrs: dict) -> dict:
        if "quality_score" in attrs and attrs.get("quality_overridden") is False:
            raise serializers.ValidationError(
                "Setting quality_score overrides it: leave out quality_overridden=false."
            )
        return attrs


class CatalogModelsEnabledSerializer(serializers.Serializer):
    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1), allow_empty=False, max_length=1000
    )
    is_enabled = serializers.BooleanField()


class CatalogModelsEnabledResultSerializer(serializers.Serializer):
    changed = serializers.IntegerField(help_text="Models whose state changed.")


class CatalogModelQuerySerializer(serializers.Serializer):
    provider = serializers.SlugField(required=False, help_text="A provider's slug.")
    enabled = serializers.BooleanField(required=False, allow_null=True, default=None)
    deprecated = serializers.BooleanField(required=False, allow_null=True, default=None)
    mode = serializers.ChoiceField(choices=["chat", "embedding"], required=False)
    search = serializers.CharField(
        required=False, max_length=200, help_text="Part of the name or model id."
    )


class RoutingPolicySerializer(serializers.ModelSerializer):
    max_price_per_1k = serializers.DecimalField(
        max_digits=10, decimal_places=6, coerce_to_string=True, read_only=True
    )
    preferred_provider_kinds = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = RoutingPolicy
        fields = [
            "id",
            "power_level",
            "max_price_per_1k",
            "weight_cost",
            "weight_latency",
            "weight_quality",
            "max_latency_ms",
            "preferred_provider_kinds",
            "description",
        ]
        read_only_fields = fields


class RoutingPolicyUpdateSerializer(serializers.Serializer):
    max_price_per_1k = serializers.DecimalField(
        max_digits=10,
        decimal_places=6,
        min_value=0,
        required=False,
        help_text="USD per 1K tokens (mean of input and output).",
    )
    weight_cost = serializers.FloatField(min_value=0, max_value=1, required=False)
    weight_latency = serializers.FloatField(min_value=0, max_value=1, required=False)
    weight_quality = serializers.FloatField(min_value=0, max_value=1, required=False)
    max_latency_ms = serializers.IntegerField(
        min_value=1, max_value=600_000, required=False, help_text="Latency that scores zero."
    )
    preferred_provider_kinds = serializers.ListField(
        child=serializers.ChoiceField(choices=ProviderKind.choices),
        required=False,
        help_text="Provider kinds scored first among equals.",
    )
    description = serializers.CharField(max_length=300, allow_blank=True, required=False)
