"""Management API shapes for the tenant's API keys and members, and the error every view uses."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from tenants.choices import DEFAULT_SCOPES, Role, Scope
from tenants.models import Invitation, Membership, TenantAPIKey


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What went wrong, in words.")


def error_responses(
    *,
    forbidden: str,
    bad_request: str | None = None,
    not_found: str | None = None,
) -> dict[int, OpenApiResponse]:
    """The `{"detail": ...}` answers of an operation, for `extend_schema(responses=...)`."""
    responses = {
        401: OpenApiResponse(ErrorSerializer, description="No, unknown or revoked API key."),
        403: OpenApiResponse(ErrorSerializer, description=forbidden),
    }
    if bad_request:
        responses[400] = OpenApiResponse(ErrorSerializer, description=bad_request)
    if not_found:
        responses[404] = OpenApiResponse(ErrorSerializer, description=not_found)
    return responses


# --- API keys -------------------------------------------------------------------------------


class APIKeySerializer(serializers.ModelSerializer):
    """A key as lists show it: its prefix, never the key or its hash."""

    end_user = serializers.SlugRelatedField(
        slug_field="external_id",
        read_only=True,
        allow_null=True,
        help_text="The end user every request with this key acts for, if bound.",
    )
    scopes = serializers.ListField(child=serializers.CharField(), read_only=True)
    created_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    is_revoked = serializers.BooleanField(read_only=True)

    class Meta:
        model = TenantAPIKey
        fields = [
            "id",
            "name",
            "prefix",
            "scopes",
            "end_user",
            "requests_per_minute",
            "created_by",
            "created_at",
            "last_used_at",
            "revoked_at",
            "is_revoked",
        ]
        read_only_fields = fields


class APIKeyCreatedSerializer(APIKeySerializer):
    """The one response that carries the key itself: store it now, it is never shown again."""

    key = serializers.SerializerMethodField()

    class Meta(APIKeySerializer.Meta):
        fields = [*APIKeySerializer.Meta.fields, "key"]
        read_only_fields = fields

    def get_key(self, obj: TenantAPIKey) -> str:
        """The full key (`sy-...`): shown in this response only; stored as a hash."""
        return self.context["raw_key"]


class APIKeyCreateSerializer(serializers.Serializer):
    name = serializers.CharField(
        max_length=100, help_text="What uses the key, e.g. “support bot (production)”."
    )
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=Scope.choices),
        default=lambda: [str(s) for s in DEFAULT_SCOPES],
        allow_empty=False,
        help_text=f"What the key may do. Default: {', '.join(DEFAULT_SCOPES)}.",
    )
    end_user = serializers.CharField(
        max_length=128,
        required=False,
        help_text="Bind the key to this end user (your id for them, created if new): every "
        "request with it acts for them.",
    )
    requests_per_minute = serializers.IntegerField(
        min_value=1,
        required=False,
        allow_null=True,
        help_text="A limit for this key alone, at most the plan's.",
    )

    def validate_scopes(self, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    def validate_requests_per_minute(self, value: int | None) -> int | None:
        tenant = self.context["tenant"]
        limit = tenant.plan.requests_per_minute
        if value and limit and value > limit:
            raise serializers.ValidationError(
                f"Your plan allows {limit} requests per minute; a key's limit can only be lower."
            )
        return value


# --- members and invitations ----------------------------------------------------------------


class MemberSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)
    email = serializers.EmailField(source="user.email", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "username", "email", "role", "created_at"]
        read_only_fields = fields


class MemberRoleSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)


class InvitationSerializer(serializers.ModelSerializer):
    invited_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = Invitation
        fields = ["id", "email", "role", "invited_by", "created_at", "expires_at"]
        read_only_fields = fields


class InviteSerializer(serializers.Serializer):
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=Role.choices, default=Role.MEMBER)


# The errors every staff-only endpoint can answer (session staff only; API keys never).
STAFF_ERRORS = {
    401: OpenApiResponse(ErrorSerializer, description="Not signed in."),
    403: OpenApiResponse(ErrorSerializer, description="Not staff, or an API key."),
}
STAFF_BAD = {400: OpenApiResponse(ErrorSerializer, description="Invalid input; nothing saved.")}
