"""Staff admin for providers and provider keys. Key writes go through providers.services."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count, Prefetch
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.views.decorators.debug import sensitive_post_parameters

from providers import health, services, validation
from providers.choices import HealthStatus, KeyStatus
from providers.forms import (
    ProviderAdminForm,
    ProviderKeyAdminForm,
    UpstreamHostAllowanceAdminForm,
)
from providers.models import Provider, ProviderHealthCheck, ProviderKey, UpstreamHostAllowance
from tenants.admin_mixins import (
    AuditedActionsMixin,
    AuditedAdminMixin,
    adopt_saved,
    changelist_link,
)
from tenants.crypto import DecryptionError
from tenants.services import rotate_encryption_keys

# A live test waits up to its timeout per key; more than this many would stall the request.
KEY_TEST_LIMIT = 10
KEY_TEST_TIMEOUT_SECONDS = 10
# A health check waits up to providers.health.HEALTH_CHECK_TIMEOUT_SECONDS per provider.
HEALTH_CHECK_LIMIT = 10
# Checks drawn as dots in the changelist (one prefetch query for the whole page) and
# listed on the change page.
RECENT_CHECKS_DOTS = 10
RECENT_CHECKS_LISTED = 20

HEALTH_COLOURS = {
    HealthStatus.HEALTHY: "#2e7d32",
    HealthStatus.DEGRADED: "#ef6c00",
    HealthStatus.DOWN: "#c62828",
    HealthStatus.UNKNOWN: "#757575",
}
KEY_STATUS_COLOURS = {
    KeyStatus.ACTIVE: "#2e7d32",
    KeyStatus.PENDING: "#757575",
    KeyStatus.INVALID: "#c62828",
    KeyStatus.DISABLED: "#ef6c00",
}


def _badge(colour: str, text: str):
    return format_html('<span style="color:{};font-weight:bold">{}</span>', colour, text)


class OwnerFilter(admin.SimpleListFilter):
    title = "owner"
    parameter_name = "owner"

    def lookups(self, request, model_admin):
        return [("platform", "Platform"), ("tenant", "A tenant")]

    def queryset(self, request, queryset):
        if self.value() == "platform":
            return queryset.filter(tenant__isnull=True)
        if self.value() == "tenant":
            return queryset.filter(tenant__isnull=False)
        return queryset


@admin.register(Provider)
class ProviderAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Which providers are up, how fast do they answer, how many keys and models do they have?"""

    audit_noun = "provider"
    form = ProviderAdminForm
    list_display = [
        "name",
        "kind",
        "protocol",
        "base_url",
        "owner",
        "is_enabled",
        "health",
        "health_latency_ms",
        "health_checked_at",
        "consecutive_failures",
        "recent_checks",
        "key_count",
        "model_count",
    ]
    list_filter = ["is_enabled", "health_status", "kind", "protocol", OwnerFilter]
    actions = ["run_health_check"]
    list_select_related = ["tenant"]
    search_fields = ["name", "slug", "base_url", "tenant__slug"]
    autocomplete_fields = ["tenant"]
    prepopulated_fields = {"slug": ["name"]}
    fieldsets = [
        (None, {"fields": ["name", "slug", "kind", "protocol", "base_url", "options"]}),
        ("Owner and status", {"fields": ["tenant", "is_enabled"]}),
        (
            "Health (written by the health check)",
            {
                "fields": [
                    "health_status",
                    "health_checked_at",
                    "health_latency_ms",
                    "consecutive_failures",
                    "health_error",
                    "check_history",
                ]
            },
        ),
    ]
    readonly_fields = [
        "health_status",
        "health_checked_at",
        "health_latency_ms",
        "consecutive_failures",
        "health_error",
        "check_history",
    ]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                _key_count=Count("keys", distinct=True),
                # `models` is routing's catalog relation: counted by name, not imported.
                _model_count=Count("models", distinct=True),
            )
            .prefetch_related(
                Prefetch(
                    "health_checks",
                    queryset=ProviderHealthCheck.objects.order_by("-checked_at")[
                        :RECENT_CHECKS_DOTS
                    ],
                    to_attr="_recent_checks",
                )
            )
        )

    @admin.display(description="owner", ordering="tenant__name")
    def owner(self, obj: Provider):
        return obj.tenant or "platform"

    @admin.display(description="health", ordering="health_status")
    def health(self, obj: Provider):
        text = obj.get_health_status_display()
        if obj.health_error:
            return format_html(
                '{} <span title="{}">ⓘ</span>',
                _badge(HEALTH_COLOURS.get(obj.health_status, "#757575"), text),
                obj.health_error,
            )
        return _badge(HEALTH_COLOURS.get(obj.health_status, "#757575"), text)

    @admin.display(description="keys", ordering="_key_count")
    def key_count(self, obj: Provider):
        return changelist_link(ProviderKey, obj._key_count, provider__id__exact=obj.pk)

    @admin.display(description="models", ordering="_model_count")
    def model_count(self, obj: Provider):
        return obj._model_count

    @admin.display(description="last checks")
    def recent_checks(self, obj: Provider):
        """Newest on the right, like a timeline; hover for the time and the error."""
        checks = list(reversed(obj._recent_checks))
        if not checks:
            return "—"
        return format_html_join(
            "",
            '<span title="{}" style="color:{}">●</span>',
            (
                (
                    f"{timezone.localtime(c.checked_at):%Y-%m-%d %H:%M:%S} "
                    + (f"{c.latency_ms} ms" if c.ok else c.error),
                    HEALTH_COLOURS[HealthStatus.HEALTHY if c.ok else HealthStatus.DOWN],
                )
                for c in checks
            ),
        )

    @admin.display(description="recent checks")
    def check_history(self, obj: Provider):
        if obj is None or obj.pk is None:
            return "—"
        checks = obj.health_checks.order_by("-checked_at")[:RECENT_CHECKS_LISTED]
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    f"{timezone.localtime(c.checked_at):%Y-%m-%d %H:%M:%S}",
                    _badge(
                        HEALTH_COLOURS[HealthStatus.HEALTHY if c.ok else HealthStatus.DOWN],
                        "ok" if c.ok else "failed",
                    ),
                    "—" if c.latency_ms is None else f"{c.latency_ms} ms",
                    c.error or "",
                )
                for c in checks
            ),
        )
        if not rows:
            return "No checks yet."
        return format_html(
            "<table><thead><tr><th>checked at</th><th>result</th><th>latency</th>"
            "<th>error</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    @admin.action(description="Run health check now", permissions=["change"])
    def run_health_check(self, request, queryset):
        providers = list(queryset[: HEALTH_CHECK_LIMIT + 1])
        if len(providers) > HEALTH_CHECK_LIMIT:
            self.message_user(
                request,
                f"Select at most {HEALTH_CHECK_LIMIT} providers to check at once.",
                messages.ERROR,
            )
            return
        for provider in providers:
            check = health.check_provider(provider=provider, now=timezone.now())
            if check is None:
                reason = "disabled" if not provider.is_enabled else "no usable platform key"
                self.message_user(request, f"{provider}: not checked ({reason}).", messages.WARNING)
            elif check.ok:
                self.message_user(
                    request,
                    f"{provider}: healthy ({check.latency_ms} ms).",
                    messages.SUCCESS,
                )
            else:
                self.message_user(
                    request,
                    f"{provider}: {provider.get_health_status_display().lower()} "
                    f"({provider.consecutive_failures} failure(s) in a row): {check.error}",
                    messages.ERROR,
                )


@admin.register(ProviderKey)
class ProviderKeyAdmin(AuditedActionsMixin, admin.ModelAdmin):
    """Which keys work, which failed and why, when were they last used? Secrets stay masked.

    Every write goes through providers.services (audited, config version bumped); the secret
    is a write-only form field, so neither plaintext nor ciphertext is ever rendered.
    """

    form = ProviderKeyAdminForm
    list_display = [
        "provider",
        "masked_key",
        "scope",
        "owner",
        "label",
        "status_badge",
        "is_enabled",
        "last_validated_at",
        "last_used_at",
        "last_error_short",
    ]
    list_filter = ["status", "last_validated_at", "is_enabled", "scope", "provider"]
    list_select_related = ["provider", "tenant", "end_user"]
    search_fields = [
        "label",
        "=last4",
        "provider__name",
        "provider__slug",
        "tenant__slug",
        "end_user__external_id",
    ]
    autocomplete_fields = ["provider", "tenant", "end_user"]
    actions = ["test_keys", "enable_keys", "disable_keys", "reencrypt_secrets"]

    add_fieldsets = [
        (None, {"fields": ["provider", "tenant", "end_user", "label", "new_secret", "is_enabled"]}),
    ]
    change_fieldsets = [
        (None, {"fields": ["provider", "scope", "tenant", "end_user", "masked_key"]}),
        ("Change", {"fields": ["label", "new_secret", "is_enabled"]}),
        (
            "Status",
            {
                "fields": [
                    "status",
                    "last_validated_at",
                    "last_error",
                    "last_used_at",
                    "created_at",
                    "updated_at",
                ]
            },
        ),
    ]
    change_readonly_fields = [
        "provider",
        "scope",
        "tenant",
        "end_user",
        "masked_key",
        "status",
        "last_validated_at",
        "last_error",
        "last_used_at",
        "created_at",
        "updated_at",
    ]

    @method_decorator(sensitive_post_parameters("new_secret"))
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        # Error reports (a 500's e-mail, the debug page) then show the key as stars.
        return super().changeform_view(request, object_id, form_url, extra_context)

    def get_fieldsets(self, request, obj=None):
        return self.add_fieldsets if obj is None else self.change_fieldsets

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.change_readonly_fields

    @admin.display(description="key", ordering="last4")
    def masked_key(self, obj: ProviderKey):
        return format_html("<code>{}</code>", obj.masked)

    @admin.display(description="owner")
    def owner(self, obj: ProviderKey):
        if obj.end_user_id:
            return f"{obj.tenant} / {obj.end_user}"
        return obj.tenant or "platform"

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: ProviderKey):
        return _badge(KEY_STATUS_COLOURS.get(obj.status, "#757575"), obj.get_status_display())

    @admin.display(description="last error")
    def last_error_short(self, obj: ProviderKey):
        return obj.last_error[:80] or "—"

    # --- saves: one service call per kind of change --------------------------------------

    def save_model(self, request, obj, form, change):
        secret = form.cleaned_data.get("new_secret") or ""
        if not change:
            key = services.add_provider_key(
                provider=form.cleaned_data["provider"],
                secret=secret,
                actor=request.user,
                tenant=form.cleaned_data.get("tenant"),
                end_user=form.cleaned_data.get("end_user"),
                label=form.cleaned_data.get("label", ""),
            )
            if not form.cleaned_data.get("is_enabled", True):
                services.set_provider_key_enabled(key=key, enabled=False, actor=request.user)
            adopt_saved(obj, key)
            return
        # The form already wrote its values onto `obj`; services compare against the row.
        current = ProviderKey.objects.select_related("provider", "tenant").get(pk=obj.pk)
        if "label" in form.changed_data and current.label != obj.label:
            services.rename_provider_key(key=current, label=obj.label, actor=request.user)
        if secret:
            services.replace_provider_key_secret(key=current, secret=secret, actor=request.user)
        if "is_enabled" in form.changed_data:
            services.set_provider_key_enabled(
                key=current, enabled=obj.is_enabled, actor=request.user
            )
        adopt_saved(obj, current)

    def delete_model(self, request, obj):
        services.delete_provider_key(key=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for key in queryset.select_related("provider", "tenant"):
            services.delete_provider_key(key=key, actor=request.user)

    # --- actions -----------------------------------------------------------------------

    @admin.action(description="Test key (a small live request)", permissions=["change"])
    def test_keys(self, request, queryset):
        keys = list(queryset.select_related("provider", "tenant")[: KEY_TEST_LIMIT + 1])
        if len(keys) > KEY_TEST_LIMIT:
            self.message_user(
                request,
                f"Select at most {KEY_TEST_LIMIT} keys to test at once.",
                messages.ERROR,
            )
            return
        for key in keys:
            provider = key.provider
            try:
                secret = key.reveal_secret()
            except DecryptionError as exc:
                self.message_user(request, f"{key}: {exc}", messages.ERROR)
                continue
            result = validation.validate_key(
                protocol=provider.protocol,
                kind=provider.kind,
                base_url=provider.base_url,
                api_key=secret,
                options=provider.options or {},
                model_id=None,  # a models-list request: no catalog lookup, no tokens spent
                timeout=KEY_TEST_TIMEOUT_SECONDS,
                tenant_endpoint=provider.tenant_id is not None,
            )
            # Validation scrubs its messages; this makes sure the key never reaches the page.
            note = (result.error or "").replace(secret, key.masked)
            services.record_key_validation(
                key=key, ok=result.ok, error="" if result.ok else note, actor=request.user
            )
            if result.ok:
                text = f"{key}: works ({result.latency_ms} ms)." + (f" {note}" if note else "")
                self.message_user(request, text, messages.SUCCESS)
            else:
                self.message_user(request, f"{key}: failed: {note}", messages.ERROR)

    @admin.action(description="Enable selected keys", permissions=["change"])
    def enable_keys(self, request, queryset):
        self._set_enabled(request, queryset, enabled=True)

    @admin.action(description="Disable selected keys", permissions=["change"])
    def disable_keys(self, request, queryset):
        self._set_enabled(request, queryset, enabled=False)

    def _set_enabled(self, request, queryset, *, enabled: bool) -> None:
        count = 0
        for key in queryset.filter(is_enabled=not enabled).select_related("provider", "tenant"):
            services.set_provider_key_enabled(key=key, enabled=enabled, actor=request.user)
            count += 1
        verb = "Enabled" if enabled else "Disabled"
        self.message_user(request, f"{verb} {count} key(s).", messages.SUCCESS)

    @admin.action(
        description="Re-encrypt every stored secret with the newest key", permissions=["change"]
    )
    def reencrypt_secrets(self, request, queryset):
        # Rotation covers every encrypted field of every model, not only the selected rows:
        # a half-rotated database would keep the old key necessary.
        unreadable = 0

        def report(label: str, rewritten: int, failed: int) -> None:
            nonlocal unreadable
            unreadable += failed

        count = rotate_encryption_keys(actor=request.user, report=report)
        self.message_user(
            request,
            f"Re-encrypted {count} secret(s) with the newest key (all encrypted fields).",
            messages.SUCCESS,
        )
        if unreadable:
            self.message_user(
                request,
                f"{unreadable} secret(s) could not be decrypted with any configured key; "
                "keep the old keys until those are replaced.",
                messages.WARNING,
            )


@admin.register(UpstreamHostAllowance)
class UpstreamHostAllowanceAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Which hosts may platform providers reach past the SSRF guard, and why?

    Saves are audited and bump the config version: the gateway trusts the new list within
    a poll interval, and a host taken off it gets no more connections past the guard.
    """

    audit_noun = "upstream_host"
    form = UpstreamHostAllowanceAdminForm
    list_display = ["host", "note", "created_at"]
    search_fields = ["host", "note"]
    ordering = ["host"]
