"""Staff admin for plans, tenants, members, end users, service API keys and the audit log."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.core.handlers.asgi import ASGIRequest
from django.db.models import Count, Q
from django.http import HttpResponseBadRequest, HttpResponseNotAllowed, StreamingHttpResponse
from django.urls import path
from django.utils import timezone
from django.utils.html import format_html

from tenants import (
    admin_platform,  # noqa: F401 - audits the auth and beat admins too
    audit,
    audit_export,
    services,
)
from tenants.admin_mixins import (
    AuditedAdminMixin,
    ReadOnlyAdminMixin,
    admin_link,
    adopt_saved,
    changelist_link,
)
from tenants.forms import TenantAPIKeyAdminForm
from tenants.models import (
    AuditLog,
    EndUser,
    Invitation,
    Membership,
    Plan,
    Tenant,
    TenantAPIKey,
)

CHANGES_PREVIEW_CHARS = 80


@admin.register(Plan)
class PlanAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Which limits does each tier grant, and how many tenants are on it?"""

    audit_noun = "plan"
    list_display = [
        "name",
        "slug",
        "requests_per_minute",
        "requests_per_hour",
        "requests_per_day",
        "tokens_per_minute",
        "allows_platform_keys",
        "prepaid",
        "platform_fee_percent",
        "tenant_count",
    ]
    list_filter = ["allows_platform_keys", "prepaid"]
    search_fields = ["name", "slug"]
    ordering = ["sort_order", "name"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_tenant_count=Count("tenants"))

    @admin.display(description="tenants", ordering="_tenant_count")
    def tenant_count(self, obj: Plan):
        return changelist_link(Tenant, obj._tenant_count, plan__id__exact=obj.pk)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]
    readonly_fields = ["created_at"]


class ActiveKeysFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("active", "Active"), ("revoked", "Revoked")]

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(Tenant)
class TenantAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Who is on which plan, who is suspended, how many members and live keys each has?"""

    audit_noun = "tenant"
    list_display = [
        "name",
        "slug",
        "plan",
        "is_active",
        "member_count",
        "api_key_count",
        "billing_day",
        "created_at",
    ]
    list_filter = ["is_active", "plan"]
    list_select_related = ["plan"]
    search_fields = ["name", "slug"]
    readonly_fields = ["created_at"]
    date_hierarchy = "created_at"
    inlines = [MembershipInline]
    actions = ["suspend", "reactivate"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                _member_count=Count("memberships", distinct=True),
                _api_key_count=Count(
                    "api_keys", filter=Q(api_keys__revoked_at__isnull=True), distinct=True
                ),
            )
        )

    @admin.display(description="members", ordering="_member_count")
    def member_count(self, obj: Tenant):
        return changelist_link(Membership, obj._member_count, tenant__id__exact=obj.pk)

    @admin.display(description="live API keys", ordering="_api_key_count")
    def api_key_count(self, obj: Tenant):
        return changelist_link(
            TenantAPIKey, obj._api_key_count, tenant__id__exact=obj.pk, status="active"
        )

    def _set_active(self, request, queryset, *, active: bool) -> int:
        changed = 0
        for tenant in queryset.filter(is_active=not active):
            services.update_tenant(tenant=tenant, actor=request.user, is_active=active)
            changed += 1
        return changed

    @admin.action(description="Suspend selected tenants (their requests get 403)")
    def suspend(self, request, queryset):
        count = self._set_active(request, queryset, active=False)
        self.message_user(request, f"Suspended {count} tenant(s).", messages.SUCCESS)

    @admin.action(description="Reactivate selected tenants")
    def reactivate(self, request, queryset):
        count = self._set_active(request, queryset, active=True)
        self.message_user(request, f"Reactivated {count} tenant(s).", messages.SUCCESS)


@admin.register(Membership)
class MembershipAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Who can manage which tenant?"""

    audit_noun = "member"
    # Roles gate the web pages, not the gateway: nothing to reload.
    audit_bumps_config = False
    list_display = ["user", "tenant", "role", "created_at"]
    list_filter = ["role"]
    list_select_related = ["user", "tenant"]
    search_fields = ["user__username", "user__email", "tenant__name", "tenant__slug"]
    autocomplete_fields = ["tenant", "user"]
    readonly_fields = ["created_at"]


@admin.register(EndUser)
class EndUserAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Which end users does a tenant serve, and which of them are login users?"""

    audit_noun = "end_user"
    list_display = ["external_id", "tenant", "user", "created_at"]
    list_select_related = ["tenant", "user"]
    search_fields = ["external_id", "tenant__slug", "tenant__name", "user__username"]
    autocomplete_fields = ["tenant", "user"]
    readonly_fields = ["created_at"]


@admin.register(TenantAPIKey)
class TenantAPIKeyAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Which service keys does a tenant have, what may they do, are they used or revoked?

    Keys are created through the service (the raw key is shown once) and revoked, never
    deleted: usage rows keep pointing at them.
    """

    audit_noun = "api_key"
    form = TenantAPIKeyAdminForm
    list_display = [
        "name",
        "tenant",
        "key_prefix",
        "scope_list",
        "end_user",
        "is_live",
        "last_used_at",
        "created_at",
    ]
    list_filter = [ActiveKeysFilter]
    list_select_related = ["tenant", "end_user"]
    search_fields = ["name", "prefix", "tenant__slug", "tenant__name"]
    autocomplete_fields = ["tenant", "end_user"]
    date_hierarchy = "created_at"
    actions = ["revoke"]

    def get_readonly_fields(self, request, obj=None):
        shown = ["key_prefix", "created_by", "created_at", "last_used_at", "revoked_at"]
        if obj is None:
            return []
        return ["tenant", "end_user", *shown]

    def get_fields(self, request, obj=None):
        fields = ["tenant", "name", "scopes", "end_user", "requests_per_minute"]
        if obj is None:
            return fields
        return [*fields, "key_prefix", "created_by", "created_at", "last_used_at", "revoked_at"]

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="key")
    def key_prefix(self, obj: TenantAPIKey):
        return format_html("<code>{}…</code>", obj.prefix)

    @admin.display(description="scopes")
    def scope_list(self, obj: TenantAPIKey):
        return ", ".join(obj.scopes or []) or "—"

    @admin.display(description="live", boolean=True, ordering="revoked_at")
    def is_live(self, obj: TenantAPIKey) -> bool:
        return not obj.is_revoked

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        key, raw = services.create_api_key(
            tenant=form.cleaned_data["tenant"],
            name=form.cleaned_data["name"],
            actor=request.user,
            scopes=form.cleaned_data["scopes"],
            end_user=form.cleaned_data.get("end_user"),
            requests_per_minute=form.cleaned_data.get("requests_per_minute"),
        )
        adopt_saved(obj, key)
        self.message_user(
            request,
            format_html(
                "The new key for {} is <code>{}</code>. Copy it now: it is stored only as a "
                "hash and will not be shown again.",
                key.tenant,
                raw,
            ),
            messages.WARNING,
        )

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset):
        count = 0
        for key in queryset.filter(revoked_at__isnull=True).select_related("tenant"):
            services.revoke_api_key(key=key, actor=request.user)
            count += 1
        self.message_user(request, f"Revoked {count} key(s).", messages.SUCCESS)


class TargetTypeFilter(admin.SimpleListFilter):
    """Audited kinds of row, from the admin's registry: no DISTINCT over the whole log."""

    title = "target type"
    parameter_name = "target_type"

    def lookups(self, request, model_admin):
        models = sorted(model_admin.admin_site._registry, key=lambda m: m._meta.label_lower)
        return [(m._meta.label_lower, m._meta.verbose_name) for m in models]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(target_type=self.value())
        return queryset


class ActorKindFilter(admin.SimpleListFilter):
    """Who acted, by kind; a particular person is a search for their username."""

    title = "actor"
    parameter_name = "actor_kind"

    def lookups(self, request, model_admin):
        return [
            ("staff", "Staff"),
            ("user", "Tenant users"),
            ("api_key", "API keys"),
            ("router", "The router"),
            ("system", "System (tasks, commands)"),
        ]

    def queryset(self, request, queryset):
        match self.value():
            case "staff":
                return queryset.filter(actor__is_staff=True)
            case "user":
                return queryset.filter(actor__isnull=False, actor__is_staff=False)
            case "api_key":
                return queryset.filter(actor__isnull=True, actor_label__startswith="api-key:")
            case "router":
                return queryset.filter(actor__isnull=True, actor_label=audit.ROUTER_LABEL)
            case "system":
                return queryset.filter(actor__isnull=True).exclude(
                    Q(actor_label__startswith="api-key:") | Q(actor_label=audit.ROUTER_LABEL)
                )
        return queryset


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Who changed which key, setting or tenant, when and from where? Read-only for everyone,
    superusers included (the log is append-only); exported as CSV with the filters applied."""

    list_display = [
        "created_at",
        "action",
        "actor_label",
        "tenant_link",
        "target",
        "changes_short",
        "ip_address",
    ]
    list_filter = [
        ("created_at", admin.DateFieldListFilter),
        "action",
        ActorKindFilter,
        "tenant",
        TargetTypeFilter,
    ]
    list_select_related = ["tenant", "actor"]
    search_fields = [
        "action",
        "actor_label",
        "target_repr",
        "=target_id",
        "tenant__slug",
        "=ip_address",
    ]
    date_hierarchy = "created_at"
    actions = ["export_csv"]
    fields = [
        "created_at",
        "action",
        "actor",
        "actor_label",
        "tenant",
        "target_type",
        "target_id",
        "target_repr",
        "changes_pretty",
        "ip_address",
        "user_agent",
    ]
    readonly_fields = fields

    def get_urls(self):
        export = path(
            "export.csv",
            self.admin_site.admin_view(self.export_view),
            name="tenants_auditlog_export",
        )
        return [export, *super().get_urls()]

    @admin.display(description="tenant", ordering="tenant__name")
    def tenant_link(self, obj: AuditLog):
        return admin_link(obj.tenant)

    @admin.display(description="target")
    def target(self, obj: AuditLog):
        if not obj.target_type:
            return "—"
        return format_html(
            "{} <small>({} #{})</small>", obj.target_repr, obj.target_type, obj.target_id
        )

    @admin.display(description="changes")
    def changes_short(self, obj: AuditLog) -> str:
        text = json.dumps(obj.changes, ensure_ascii=False, sort_keys=True) if obj.changes else ""
        if len(text) > CHANGES_PREVIEW_CHARS:
            return text[: CHANGES_PREVIEW_CHARS - 1] + "…"
        return text

    @admin.display(description="changes")
    def changes_pretty(self, obj: AuditLog):
        return format_html(
            "<pre>{}</pre>", json.dumps(obj.changes, ensure_ascii=False, indent=2, sort_keys=True)
        )

    # --- export: the changelist's button (filters and search applied) and an action ---------

    def export_view(self, request):
        """GET: every entry the changelist shows with the same query string, as CSV."""
        if request.method != "GET":
            return HttpResponseNotAllowed(["GET"])
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            entries = self.get_changelist_instance(request).get_queryset(request)
        except IncorrectLookupParameters:
            return HttpResponseBadRequest("Unknown filter in the query string.")
        filters = {k: v for k, v in request.GET.items() if k not in ("p", "o")}
        return self._export(request, entries, filters)

    @admin.action(description="Export selected entries as CSV", permissions=["view"])
    def export_csv(self, request, queryset):
        return self._export(request, queryset, {"selected": queryset.count()})

    def _export(self, request, entries, filters: dict) -> StreamingHttpResponse:
        own = services.record_audit_export(
            actor=request.user, tenant=None, fmt="csv", filters=filters
        )
        rows = (
            entries.filter(pk__lt=own.pk)
            .select_related("tenant", "actor")
            .iterator(chunk_size=audit_export.EXPORT_BATCH_ROWS)
        )
        content = audit_export.streamed(
            rows, for_tenant=False, is_async=isinstance(request, ASGIRequest)
        )
        response = StreamingHttpResponse(content, content_type="text/csv; charset=utf-8")
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="audit-log-{stamp}.csv"'
        response["Cache-Control"] = "no-store"
        return response


@admin.register(Invitation)
class InvitationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Who was invited where, by whom, and did they accept? (Tenants manage them on their
    members page; the token is only ever a hash.)"""

    list_display = [
        "email",
        "tenant",
        "role",
        "invited_by",
        "created_at",
        "expires_at",
        "accepted_at",
    ]
    list_filter = ["role", ("accepted_at", admin.EmptyFieldListFilter)]
    list_select_related = ["tenant", "invited_by"]
    search_fields = ["email", "tenant__slug", "tenant__name"]
    date_hierarchy = "created_at"
    exclude = ["token_hash"]
