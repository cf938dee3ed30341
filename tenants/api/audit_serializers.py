"""Management API shapes of the tenant's audit log: the query and one entry."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from tenants import audit_export
from tenants.models import AuditLog
from tenants.selectors import AuditFilters

FORMATS = ("json", "csv")


class AuditQuerySerializer(serializers.Serializer):
    """Filters of GET /api/v1/audit-log; every one is optional."""

    action = serializers.CharField(
        required=False,
        max_length=64,
        help_text='An action (`provider_key.added`), or a prefix ending in "." '
        "(`provider_key.` is every key action).",
    )
    actor = serializers.CharField(
        required=False,
        max_length=150,
        help_text="Who acted, as the entry names them: a username, `api-key:<prefix>`, "
        "`router` or `system`.",
    )
    target_type = serializers.CharField(
        required=False, max_length=64, help_text="The kind of row, e.g. `providers.providerkey`."
    )
    target_id = serializers.CharField(required=False, max_length=64)
    since = serializers.DateTimeField(
        required=False, help_text="Entries at or after this time (a date means its midnight, UTC)."
    )
    until = serializers.DateTimeField(
        required=False, help_text="Entries before this time (a date means its midnight, UTC)."
    )
    format = serializers.ChoiceField(
        choices=FORMATS,
        required=False,
        default="json",
        help_text="`csv` streams every matching entry (no pages) as a CSV file.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        since, until = attrs.get("since"), attrs.get("until")
        if since and until and since >= until:
            raise serializers.ValidationError({"until": "Must be later than `since`."})
        return attrs

    def filters(self) -> AuditFilters:
        data = self.validated_data
        return AuditFilters(
            action=data.get("action", ""),
            actor=data.get("actor", ""),
            target_type=data.get("target_type", ""),
            target_id=data.get("target_id", ""),
            since=data.get("since"),
            until=data.get("until"),
        )


class AuditEntrySerializer(serializers.Serializer):
    """One entry, as the tenant's owners see it: changes hold masked values, never a secret;
    a change made by Switchyard staff names no one and carries no address."""

    id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    actor = serializers.CharField(
        help_text="A username, `api-key:<prefix>`, `router`, `system`, or `Switchyard staff`."
    )
    action = serializers.CharField(help_text="Dotted: `<noun>.<verb>`, e.g. `api_key.revoked`.")
    target_type = serializers.CharField(help_text="The kind of row acted on, or empty.")
    target_id = serializers.CharField()
    target = serializers.CharField(help_text="The row's name when the entry was written.")
    changes = serializers.JSONField(help_text="What changed: `{field: [old, new]}` or facts.")
    ip_address = serializers.IPAddressField(
        allow_null=True, help_text="The client's address, when the change came from a request."
    )
    user_agent = serializers.CharField(help_text="The client's user agent, trimmed.")

    def to_representation(self, instance: AuditLog) -> dict[str, Any]:
        return super().to_representation(audit_export.entry_fields(instance, for_tenant=True))
