"""Management API shapes for usage, credits and limits: query parameters in, reports out."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from rest_framework import serializers

from usage.choices import CapMode, CapScope
from usage.models import CreditLedgerEntry, SpendingCap
from usage.selectors import MAX_REPORT_DAYS, USAGE_GROUPS, UsageFilters

MONEY = {"max_digits": 20, "decimal_places": 8, "coerce_to_string": True}
INT32_MAX = 2**31 - 1  # provider and catalog-model ids are integer columns
INT64_MAX = 2**63 - 1


class UsageQuerySerializer(serializers.Serializer):
    """Filters shared by the usage report and the CSV export. Days are UTC, both inclusive."""

    start = serializers.DateField(
        required=False,
        input_formats=["%Y-%m-%d"],
        help_text="First day (YYYY-MM-DD, UTC). Default: the current billing period's first.",
    )
    end = serializers.DateField(
        required=False,
        input_formats=["%Y-%m-%d"],
        help_text="Last day, inclusive. Default: the current billing period's last. "
        f"At most {MAX_REPORT_DAYS} days after `start`.",
    )
    end_user = serializers.CharField(
        required=False, max_length=128, help_text="An end user's id (the `user` you send)."
    )
    api_key = serializers.IntegerField(
        required=False, min_value=1, max_value=INT64_MAX, help_text="An API key's id."
    )
    provider = serializers.IntegerField(
        required=False, min_value=1, max_value=INT32_MAX, help_text="A provider's id."
    )
    model = serializers.IntegerField(
        required=False, min_value=1, max_value=INT32_MAX, help_text="A catalog model's id."
    )

    def validate(self, attrs: dict) -> dict:
        default_start, default_end = self.context["default_period"]
        start: date = attrs.get("start", default_start)
        end: date = attrs.get("end", default_end)
        if start > end:
            raise serializers.ValidationError("`start` is after `end`.")
        if (end - start).days + 1 > MAX_REPORT_DAYS:
            raise serializers.ValidationError(f"The range is longer than {MAX_REPORT_DAYS} days.")
        attrs["start"], attrs["end"] = start, end
        return attrs

    def filters(self, *, only_end_user_id: int | None) -> UsageFilters:
        data = self.validated_data
        return UsageFilters(
            start=data["start"],
            end=data["end"],
            end_user=data.get("end_user"),
            api_key_id=data.get("api_key"),
            provider_id=data.get("provider"),
            model_id=data.get("model"),
            only_end_user_id=only_end_user_id,
        )


class UsageReportQuerySerializer(UsageQuerySerializer):
    group_by = serializers.ChoiceField(
        choices=USAGE_GROUPS, default="day", help_text="How results are grouped."
    )


class UsageRowSerializer(serializers.Serializer):
    key = serializers.CharField(
        allow_null=True,
        help_text="The group: a day (YYYY-MM-DD), an end user's id, or a provider / model / "
        "API key id as a string (pass it back as a filter). Null: records without one.",
    )
    label = serializers.CharField(help_text="The group's display name.")
    requests = serializers.IntegerField(
        help_text="Successful attempts: each request succeeds at most once, so requests served."
    )
    errors = serializers.IntegerField(
        help_text="Failed attempts (a request that fell back counts one per failed attempt, "
        "under the provider that failed)."
    )
    input_tokens = serializers.IntegerField(help_text="Uncached input tokens.")
    cached_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cost_usd = serializers.DecimalField(**MONEY)
    avg_latency_ms = serializers.IntegerField(
        allow_null=True, help_text="Mean latency of every attempt in the group."
    )


class UsageReportSerializer(serializers.Serializer):
    group_by = serializers.ChoiceField(choices=USAGE_GROUPS)
    start = serializers.DateField()
    end = serializers.DateField()
    results = UsageRowSerializer(many=True)
    totals = UsageRowSerializer()


class CreditEntrySerializer(serializers.ModelSerializer):
    amount_usd = serializers.DecimalField(**MONEY)

    class Meta:
        model = CreditLedgerEntry
        fields = ["id", "created_at", "kind", "amount_usd", "reason"]
        read_only_fields = fields


class CreditsSerializer(serializers.Serializer):
    balance_usd = serializers.DecimalField(**MONEY, help_text="The ledger's sum.")
    count = serializers.IntegerField(help_text="Ledger entries in all.")
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    entries = CreditEntrySerializer(many=True, help_text="Newest first (limit / offset).")


LEVELS = ["healthy", "normal", "warning", "critical"]


def level_field(**kwargs) -> serializers.ChoiceField:
    kwargs.setdefault(
        "help_text", "healthy < 50 % used, normal < 80 %, warning < 95 %, critical from 95 %."
    )
    return serializers.ChoiceField(choices=LEVELS, **kwargs)


class RateLimitStatusSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["rate"])
    name = serializers.CharField(
        help_text="requests-minute, requests-hour, requests-day, tokens-minute, or "
        "key-requests-minute (the calling key's own limit)."
    )
    unit = serializers.ChoiceField(choices=["requests", "tokens"])
    period_seconds = serializers.IntegerField()
    limit = serializers.IntegerField()
    used = serializers.IntegerField(allow_null=True)
    remaining = serializers.IntegerField(allow_null=True)
    reset_seconds = serializers.IntegerField(
        allow_null=True, help_text="Until the limit is fully available again."
    )
    level = level_field(allow_null=True)
    unavailable = serializers.BooleanField(
        help_text="The counters could not be read (the other fields are null)."
    )


class SpendingCapStatusSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["spending_cap"])
    name = serializers.ChoiceField(choices=["spending-cap-tenant", "spending-cap-end-user"])
    mode = serializers.ChoiceField(choices=["soft", "hard"])
    cap_usd = serializers.DecimalField(**MONEY)
    spent_usd = serializers.DecimalField(**MONEY, help_text="Spent this billing period.")
    remaining_usd = serializers.DecimalField(**MONEY)
    period_start = serializers.DateField()
    period_end = serializers.DateField(help_text="First day of the next period.")
    reset_seconds = serializers.IntegerField(help_text="Until the next period starts.")
    level = level_field()


class CreditStatusSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["credits"])
    name = serializers.CharField()
    balance_usd = serializers.DecimalField(**MONEY)
    level = level_field(help_text="healthy while credits are left, critical when none are.")


LIMIT_SERIALIZERS = {
    "rate": RateLimitStatusSerializer,
    "spending_cap": SpendingCapStatusSerializer,
    "credits": CreditStatusSerializer,
}


# --- spending caps --------------------------------------------------------------------------

CAP_MONEY = {"max_digits": 14, "decimal_places": 2}


def thresholds_field(**kwargs) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=100),
        max_length=10,
        help_text="Percent of the cap at which an alert is sent, e.g. [50, 80, 100].",
        **kwargs,
    )


class SpendingCapSerializer(serializers.ModelSerializer):
    end_user = serializers.SlugRelatedField(
        slug_field="external_id",
        read_only=True,
        allow_null=True,
        help_text="The end user's id, for scope `user`.",
    )
    amount_usd = serializers.DecimalField(**CAP_MONEY, coerce_to_string=True, read_only=True)
    alert_thresholds = serializers.ListField(child=serializers.IntegerField(), read_only=True)

    class Meta:
        model = SpendingCap
        fields = [
            "id",
            "scope",
            "end_user",
            "amount_usd",
            "mode",
            "alert_thresholds",
            "is_enabled",
            "updated_at",
        ]
        read_only_fields = fields


class SpendingCapWriteSerializer(serializers.Serializer):
    """A cap to set: one per scope (and per end user for scope `user`)."""

    scope = serializers.ChoiceField(
        choices=CapScope.choices,
        help_text="tenant: the whole tenant; each_user: every end user (the default cap); "
        "user: one end user.",
    )
    end_user = serializers.CharField(
        max_length=128,
        required=False,
        help_text="For scope `user`: the end user's id (created if new).",
    )
    amount_usd = serializers.DecimalField(**CAP_MONEY, min_value=Decimal(0))
    mode = serializers.ChoiceField(
        choices=CapMode.choices,
        default=CapMode.HARD,
        help_text="hard refuses requests at the cap; soft only alerts.",
    )
    alert_thresholds = thresholds_field(required=False)
    is_enabled = serializers.BooleanField(default=True)

    def validate(self, attrs: dict) -> dict:
        if attrs["scope"] == CapScope.USER and not attrs.get("end_user"):
            raise serializers.ValidationError({"end_user": "Name the end user of this cap."})
        if attrs["scope"] != CapScope.USER and attrs.get("end_user"):
            raise serializers.ValidationError(
                {"end_user": "Only a cap of scope `user` names an end user."}
            )
        return attrs


class SpendingCapUpdateSerializer(serializers.Serializer):
    amount_usd = serializers.DecimalField(**CAP_MONEY, min_value=Decimal(0), required=False)
    mode = serializers.ChoiceField(choices=CapMode.choices, required=False)
    alert_thresholds = thresholds_field(required=False)
    is_enabled = serializers.BooleanField(required=False)
