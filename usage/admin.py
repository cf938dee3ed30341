"""Staff admin for usage (read-only), spending caps, the credit ledger and alerts."""

from __future__ import annotations

from decimal import Decimal
from functools import partial

from django import forms
from django.apps import apps
from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db import connections, transaction
from django.db.models import DecimalField, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html

from tenants.admin_mixins import (
    AuditedActionsMixin,
    AuditedAdminMixin,
    ReadOnlyAdminMixin,
    adopt_saved,
    changelist_link,
)
from usage import services, tasks
from usage.choices import LedgerKind
from usage.models import (
    MONEY,
    Alert,
    APIKeyUsageRollup,
    CreditLedgerEntry,
    HourlyUsage,
    SpendingCap,
    TenantUsageRollup,
    UsageRecord,
    UsageRollup,
    UsageRollupState,
)

# Below this many rows an exact COUNT(*) is cheap; above it the unfiltered changelist shows
# PostgreSQL's estimate, because counting millions of usage rows takes seconds.
EXACT_COUNT_BELOW = 100_000


class EstimatedCountPaginator(Paginator):
    """Exact counts for filtered lists and small tables; the planner's estimate otherwise."""

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        connection = connections[queryset.db]
        if connection.vendor == "postgresql" and not queryset.query.where:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                    [queryset.model._meta.db_table],
                )
                row = cursor.fetchone()
            if row and row[0] >= EXACT_COUNT_BELOW:
                return int(row[0])
        return super().count


def _name_of(app_label: str, model_name: str, column: str):
    """Subquery: the `name` of the row of app_label.model_name whose pk is `column`.

    UsageRecord keeps providers and catalog models as plain ids (STYLE §1: `usage` does not
    import them); the admin joins them back by name, one subquery per page, never per row.
    """
    model = apps.get_model(app_label, model_name)
    return Subquery(model.objects.filter(pk=OuterRef(column)).values("name")[:1])


class ProviderModelNamesMixin:
    """Provider and model names for rows that keep them as plain ids (usage may not import
    providers or routing, STYLE §1): one subquery each per page, never a query per row;
    the tenant column drills down to that tenant's rows (the tenant filter would be huge)."""

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                _provider_name=_name_of("providers", "Provider", "provider_id"),
                _model_name=_name_of("routing", "CatalogModel", "model_id"),
            )
        )

    @admin.display(description="tenant")
    def tenant_link(self, obj):
        return changelist_link(type(obj), obj.tenant, tenant__id__exact=obj.tenant_id)

    @admin.display(description="provider")
    def provider_name(self, obj) -> str:
        return obj._provider_name or (f"#{obj.provider_id}" if obj.provider_id else "—")

    @admin.display(description="model")
    def model_name(self, obj) -> str:
        return obj._model_name or (f"#{obj.model_id}" if obj.model_id else "—")


@admin.register(UsageRecord)
class UsageRecordAdmin(ProviderModelNamesMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """What did a tenant's requests cost, which provider served them, what failed and why?"""

    list_display = [
        "created_at",
        "tenant_link",
        "end_user",
        "provider_name",
        "model_name",
        "outcome",
        "http_status",
        "input_tokens",
        "cached_tokens",
        "output_tokens",
        "cost_usd",
        "latency_ms",
        "ttft_ms",
        "is_stream",
        "attempt",
    ]
    list_filter = ["outcome", "key_source", "power_level", "is_stream", "is_estimated"]
    list_select_related = ["tenant", "end_user"]
    search_fields = ["=request_id", "=tenant__slug", "=end_user__external_id"]
    date_hierarchy = "created_at"
    ordering = ["-created_at"]
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    readonly_fields = ["provider_name", "model_name"]


class SpendingCapForm(forms.ModelForm):
    class Meta:
        model = SpendingCap
        fields = [
            "tenant",
            "scope",
            "end_user",
            "amount_usd",
            "mode",
            "alert_thresholds",
            "is_enabled",
        ]

    def clean(self):
        cleaned = super().clean()
        tenant = cleaned.get("tenant")
        end_user = cleaned.get("end_user")
        if end_user is not None and tenant is not None and end_user.tenant_id != tenant.pk:
            self.add_error("end_user", "This end user belongs to another tenant.")
        thresholds = cleaned.get("alert_thresholds") or []
        if not isinstance(thresholds, list) or not all(
            isinstance(t, int) and 0 < t <= 100 for t in thresholds
        ):
            self.add_error("alert_thresholds", "A list of whole percentages, e.g. [50, 80, 100].")
        return cleaned


@admin.register(SpendingCap)
class SpendingCapAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Which tenants and end users have a monthly cap, how high, hard or soft?"""

    audit_noun = "spending_cap"
    form = SpendingCapForm
    list_display = [
        "tenant",
        "scope",
        "end_user",
        "amount_usd",
        "mode",
        "alert_thresholds",
        "is_enabled",
        "updated_at",
    ]
    list_filter = ["scope", "mode", "is_enabled"]
    list_select_related = ["tenant", "end_user"]
    search_fields = ["tenant__slug", "tenant__name", "end_user__external_id"]
    autocomplete_fields = ["tenant", "end_user"]
    readonly_fields = ["updated_at"]


class CreditGrantForm(forms.ModelForm):
    """Staff add credits by hand: grants, purchases and (signed) adjustments only."""

    kind = forms.ChoiceField(
        choices=[(k.value, k.label) for k in services.GRANTABLE_KINDS], initial=LedgerKind.GRANT
    )

    class Meta:
        model = CreditLedgerEntry
        fields = ["tenant", "kind", "amount_usd", "reason"]

    def clean(self):
        cleaned = super().clean()
        amount = cleaned.get("amount_usd")
        kind = cleaned.get("kind")
        if amount is not None:
            if amount == 0:
                self.add_error("amount_usd", "The amount is zero.")
            elif amount < 0 and kind != LedgerKind.ADJUSTMENT:
                self.add_error("amount_usd", "Only an adjustment may remove credits.")
        return cleaned


@admin.register(CreditLedgerEntry)
class CreditLedgerEntryAdmin(admin.ModelAdmin):
    """How did a tenant's credits move, who granted what, what is the balance now?

    Append-only: entries are added (through usage.services.grant_credits), never edited.
    """

    form = CreditGrantForm
    list_display = [
        "created_at",
        "tenant",
        "kind",
        "signed_amount",
        "reason",
        "created_by",
        "balance",
    ]
    list_filter = ["kind"]
    list_select_related = ["tenant", "created_by"]
    search_fields = ["tenant__slug", "tenant__name", "reason"]
    autocomplete_fields = ["tenant"]
    date_hierarchy = "created_at"

    def get_queryset(self, request):
        balance = (
            CreditLedgerEntry.objects.filter(tenant=OuterRef("tenant"))
            .order_by()
            .values("tenant")
            .annotate(total=Sum("amount_usd"))
            .values("total")
        )
        money = DecimalField(**MONEY)
        return (
            super()
            .get_queryset(request)
            .annotate(_balance=Coalesce(Subquery(balance, output_field=money), Decimal(0)))
        )

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["tenant", "kind", "amount_usd", "reason"]
        return ["created_at", "tenant", "kind", "amount_usd", "reason", "created_by"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="amount (USD)", ordering="amount_usd")
    def signed_amount(self, obj: CreditLedgerEntry):
        colour = "#2e7d32" if obj.amount_usd >= 0 else "#c62828"
        return format_html('<span style="color:{}">{}</span>', colour, f"{obj.amount_usd:+.4f}")

    @admin.display(description="tenant balance now (USD)")
    def balance(self, obj: CreditLedgerEntry) -> str:
        return f"{obj._balance:.4f}"

    def save_model(self, request, obj, form, change):
        entry = services.grant_credits(
            tenant=form.cleaned_data["tenant"],
            amount_usd=form.cleaned_data["amount_usd"],
            reason=form.cleaned_data.get("reason", ""),
            actor=request.user,
            kind=form.cleaned_data["kind"],
        )
        adopt_saved(obj, entry)


class WebhookFilter(admin.SimpleListFilter):
    """Which alerts reached the tenant's webhook, and which are still failing?"""

    title = "webhook"
    parameter_name = "webhook"

    def lookups(self, request, model_admin):
        return [("delivered", "Delivered"), ("failing", "Failing")]

    def queryset(self, request, queryset):
        if self.value() == "delivered":
            return queryset.filter(webhook_delivered_at__isnull=False)
        if self.value() == "failing":
            return queryset.filter(webhook_delivered_at__isnull=True).exclude(webhook_error="")
        return queryset


class UnreadFilter(admin.SimpleListFilter):
    title = "read"
    parameter_name = "read"

    def lookups(self, request, model_admin):
        return [("no", "Unread"), ("yes", "Read")]

    def queryset(self, request, queryset):
        if self.value() == "no":
            return queryset.filter(read_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(read_at__isnull=False)
        return queryset


@admin.register(Alert)
class AlertAdmin(AuditedActionsMixin, admin.ModelAdmin):
    """Which tenants crossed a spending threshold or have a broken key, and who has seen it?"""

    list_display = [
        "created_at",
        "tenant",
        "end_user",
        "kind",
        "message",
        "threshold",
        "is_read",
        "notified_at",
        "webhook_status",
    ]
    list_filter = [UnreadFilter, "kind", WebhookFilter]
    list_select_related = ["tenant", "end_user"]
    search_fields = ["tenant__slug", "tenant__name", "message"]
    date_hierarchy = "created_at"
    actions = ["mark_read", "retry_webhook"]
    readonly_fields = [
        "tenant",
        "end_user",
        "kind",
        "threshold",
        "period_start",
        "dedupe_key",
        "message",
        "created_at",
        "read_at",
        "notified_at",
        "webhook_delivered_at",
        "webhook_attempts",
        "webhook_error",
    ]

    def has_add_permission(self, request) -> bool:
        return False  # alerts are raised by the system

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # the row is what keeps an alert from being sent twice

    @admin.display(description="read", boolean=True, ordering="read_at")
    def is_read(self, obj: Alert) -> bool:
        return obj.read_at is not None

    @admin.action(description="Mark selected alerts as read", permissions=["change"])
    def mark_read(self, request, queryset):
        count = queryset.filter(read_at__isnull=True).update(read_at=timezone.now())
        self.message_user(request, f"Marked {count} alert(s) as read.", messages.SUCCESS)

    @admin.display(description="webhook")
    def webhook_status(self, obj: Alert):
        if obj.webhook_delivered_at is not None:
            return format_html('<span style="color:{}">{}</span>', "#2e7d32", "delivered")
        if obj.webhook_error:
            return format_html(
                '<span style="color:#c62828" title="{}">failing ({} tries)</span>',
                obj.webhook_error,
                obj.webhook_attempts,
            )
        return "—"

    @admin.action(description="Send the webhook of selected alerts again", permissions=["change"])
    def retry_webhook(self, request, queryset):
        pending = list(
            queryset.filter(webhook_delivered_at__isnull=True)
            .exclude(tenant__webhook_url="")
            .values_list("pk", flat=True)
        )
        for alert_id in pending:
            transaction.on_commit(partial(tasks.deliver_webhook.delay, alert_id))
        self.message_user(request, f"Queued {len(pending)} webhook(s).", messages.SUCCESS)


class HasErrorsFilter(admin.SimpleListFilter):
    title = "errors"
    parameter_name = "errors"

    def lookups(self, request, model_admin):
        return [("yes", "With errors"), ("no", "Without errors")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(errors__gt=0)
        if self.value() == "no":
            return queryset.filter(errors=0)
        return queryset


class RollupAdmin(ProviderModelNamesMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """What both hourly rollups' admins share: read-only, newest hour first, estimated counts."""

    list_filter = [HasErrorsFilter]
    date_hierarchy = "hour"
    ordering = ["-hour"]
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    readonly_fields = ["provider_name", "model_name", "avg_latency_ms"]

    @admin.display(description="avg latency (ms)")
    def avg_latency_ms(self, obj: UsageRollup | TenantUsageRollup) -> int | None:
        return round(obj.latency_total_ms / obj.attempts) if obj.attempts else None


MEASURE_COLUMNS = [
    "requests",
    "errors",
    "input_tokens",
    "cached_tokens",
    "output_tokens",
    "cost_usd",
    "avg_latency_ms",
]


@admin.register(UsageRollup)
class UsageRollupAdmin(RollupAdmin):
    """Hour by hour: what did each tenant spend, with which provider and model, how fast?

    Computed from the raw records by the hourly rollup job; kept after retention deletes them.
    """

    list_display = [
        "hour",
        "tenant_link",
        "end_user",
        "api_key",
        "provider_name",
        "model_name",
        *MEASURE_COLUMNS,
    ]
    list_select_related = ["tenant", "end_user", "api_key"]
    search_fields = ["=tenant__slug", "=end_user__external_id"]
    # Whose first, then what (the model's own fields come after its base's measures).
    fields = [
        "hour",
        "tenant",
        "end_user",
        "api_key",
        *(f.name for f in HourlyUsage._meta.fields if f.name not in ("id", "hour", "tenant")),
    ]


@admin.register(APIKeyUsageRollup)
class APIKeyUsageRollupAdmin(RollupAdmin):
    """Hour by hour, per tenant, API key, provider and model: what one-key dashboards read.

    The per-end-user rollup summed over end users, recomputed with it.
    """

    list_display = [
        "hour",
        "tenant_link",
        "api_key",
        "provider_name",
        "model_name",
        *MEASURE_COLUMNS,
    ]
    list_select_related = ["tenant", "api_key"]
    search_fields = ["=tenant__slug", "=api_key__prefix"]


@admin.register(TenantUsageRollup)
class TenantUsageRollupAdmin(RollupAdmin):
    """Hour by hour, per tenant, provider and model: the rollup whole-tenant dashboards read.

    The per-end-user rollup summed over end users and API keys, recomputed with it.
    """

    list_display = ["hour", "tenant_link", "provider_name", "model_name", *MEASURE_COLUMNS]
    list_select_related = ["tenant"]
    search_fields = ["=tenant__slug"]


@admin.register(UsageRollupState)
class UsageRollupStateAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """How far have the rollup job and retention got?"""

    list_display = [
        "settled_through_id",
        "scanned_through_id",
        "scanned_at",
        "complete_before",
        "purged_before",
        "updated_at",
    ]
