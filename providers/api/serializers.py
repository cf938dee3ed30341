"""Management API shapes for provider keys: a secret goes in, and never comes back out."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from providers.choices import KeyScope, ProviderKind, WireProtocol
from providers.models import Provider, ProviderKey
from providers.page_forms import VALIDATABLE_PROTOCOLS, secret_characters
from providers.selectors import providers_for

# A provider's key is at most a few hundred characters; anything longer is not one.
SECRET_MAX_CHARS = 1000
# The scopes a tenant's caller may give a key (platform keys are staff's, in the admin).
TENANT_KEY_SCOPES = [
    (KeyScope.TENANT.value, "The tenant's: every request may use it"),
    (KeyScope.USER.value, "An end user's own: requests made as that end user use it first"),
]


def secret_field() -> serializers.CharField:
    return serializers.CharField(
        write_only=True,
        max_length=SECRET_MAX_CHARS,
        trim_whitespace=True,
        validators=[secret_characters],
        style={"input_type": "password"},
        help_text="The provider's API key. Checked with a 5-token request before it is saved, "
        "then stored encrypted; only its last four characters are ever shown.",
    )


class ProviderKeySerializer(serializers.ModelSerializer):
    """A key as every response shows it: masked, never the secret."""

    provider = serializers.SlugRelatedField(
        slug_field="slug", read_only=True, help_text="The provider's slug."
    )
    provider_name = serializers.CharField(source="provider.name", read_only=True)
    end_user = serializers.SlugRelatedField(
        slug_field="external_id",
        read_only=True,
        allow_null=True,
        help_text="Whose own key it is (scope `user`): the end user's id. Null for the tenant's.",
    )
    masked = serializers.CharField(
        read_only=True, help_text="•••• and the key's last four characters."
    )

    class Meta:
        model = ProviderKey
        fields = [
            "id",
            "provider",
            "provider_name",
            "scope",
            "end_user",
            "label",
            "masked",
            "status",
            "is_enabled",
            "last_error",
            "last_validated_at",
            "last_used_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ProviderKeyCheckedSerializer(ProviderKeySerializer):
    """A key just added or replaced after a live check that accepted it."""

    validation_note = serializers.SerializerMethodField()

    class Meta(ProviderKeySerializer.Meta):
        fields = [*ProviderKeySerializer.Meta.fields, "validation_note"]
        read_only_fields = fields

    @extend_schema_field(
        serializers.CharField(
            allow_null=True,
            help_text="Set when the key works but the check had a remark (e.g. the test model "
            "was refused).",
        )
    )
    def get_validation_note(self, key: ProviderKey) -> str | None:
        return self.context.get("validation_note") or None


class ProviderKeyCreateSerializer(serializers.Serializer):
    """Shape of a new key; whether the caller may add it, and whether it works, come after."""

    provider = serializers.SlugRelatedField(
        slug_field="slug",
        queryset=Provider.objects.none(),
        help_text="Slug of a provider the tenant may use (a platform provider or its own "
        "endpoint) whose protocol can be checked live.",
    )
    scope = serializers.ChoiceField(choices=TENANT_KEY_SCOPES)
    secret = secret_field()
    label = serializers.CharField(
        max_length=100,
        required=False,
        allow_blank=True,
        default="",
        help_text="To tell keys apart.",
    )
    end_user = serializers.CharField(
        max_length=128,
        required=False,
        help_text="Only for an API key not bound to an end user, with scope `user`: whose key "
        "it is (the end user's id, created if new). Signed-in users add their own keys; a "
        "bound API key adds its end user's.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        tenant = self.context.get("tenant")
        if tenant is not None:
            self.fields["provider"].queryset = providers_for(tenant=tenant).filter(
                protocol__in=VALIDATABLE_PROTOCOLS
            )


class ProviderKeyUpdateSerializer(serializers.Serializer):
    label = serializers.CharField(max_length=100, required=False, allow_blank=True)
    is_enabled = serializers.BooleanField(
        required=False, help_text="False takes the key out of routing without deleting it."
    )


class ProviderKeyReplaceSerializer(serializers.Serializer):
    secret = secret_field()


# --- staff: providers -----------------------------------------------------------------------


class ProviderSerializer(serializers.ModelSerializer):
    tenant = serializers.SlugRelatedField(
        slug_field="slug",
        read_only=True,
        allow_null=True,
        help_text="The tenant whose own endpoint this is; null for a platform provider.",
    )

    class Meta:
        model = Provider
        fields = [
            "id",
            "name",
            "slug",
            "kind",
            "protocol",
            "base_url",
            "options",
            "tenant",
            "is_enabled",
            "health_status",
            "health_checked_at",
            "health_latency_ms",
            "health_error",
            "consecutive_failures",
            "created_at",
        ]
        read_only_fields = fields


class ProviderCreateSerializer(serializers.Serializer):
    """A platform provider; protocol and base URL default to the kind's preset."""

    name = serializers.CharField(max_length=100)
    slug = serializers.SlugField(max_length=50)
    kind = serializers.ChoiceField(choices=ProviderKind.choices)
    protocol = serializers.ChoiceField(
        choices=WireProtocol.choices, required=False, help_text="Default: the kind's."
    )
    base_url = serializers.URLField(
        max_length=300,
        required=False,
        help_text="Up to and including the version; default: the kind's.",
    )
    options = serializers.DictField(required=False, help_text="e.g. Azure's api_version.")


class ProviderUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False)
    base_url = serializers.URLField(max_length=300, required=False)
    options = serializers.DictField(required=False)
    is_enabled = serializers.BooleanField(
        required=False, help_text="false takes every model of the provider out of routing."
    )


class ProviderQuerySerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=ProviderKind.choices, required=False)
    enabled = serializers.BooleanField(required=False, allow_null=True, default=None)
    platform = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="true: platform providers only; false: tenants' own endpoints only.",
    )
