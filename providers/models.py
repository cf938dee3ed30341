from __future__ import annotations

from django.db import models
from django.db.models import Q

from providers.choices import HealthStatus, KeyScope, KeyStatus, ProviderKind, WireProtocol
from tenants.crypto import EncryptedTextField, SealedSecret
from tenants.models import EndUser, Tenant


class Provider(models.Model):
    """An upstream LLM service: its kind, wire protocol and base URL, and its health."""

    name = models.CharField(max_length=100)
    slug = models.SlugField(unique=True)
    kind = models.CharField(max_length=20, choices=ProviderKind.choices)
    protocol = models.CharField(max_length=12, choices=WireProtocol.choices)
    base_url = models.URLField(
        max_length=300, help_text="Up to and including the version, e.g. …/v1."
    )
    options = models.JSONField(
        default=dict, blank=True, help_text="Protocol extras, e.g. Azure's api_version."
    )
    tenant = models.ForeignKey(
        Tenant,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="custom_providers",
        help_text="Empty for a platform provider; set for a tenant's own custom endpoint.",
    )
    is_enabled = models.BooleanField(default=True)
    health_status = models.CharField(
        max_length=10, choices=HealthStatus.choices, default=HealthStatus.UNKNOWN, editable=False
    )
    health_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    health_latency_ms = models.PositiveIntegerField(null=True, blank=True, editable=False)
    health_error = models.CharField(max_length=300, blank=True, editable=False)
    consecutive_failures = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ProviderKey(models.Model):
    """A provider credential at platform, tenant or end-user scope; the secret is encrypted."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="keys")
    scope = models.CharField(max_length=10, choices=KeyScope.choices)
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, null=True, blank=True, related_name="provider_keys"
    )
    end_user = models.ForeignKey(
        EndUser, on_delete=models.CASCADE, null=True, blank=True, related_name="provider_keys"
    )
    label = models.CharField(max_length=100, blank=True)
    secret = EncryptedTextField(help_text="Write-only; stored encrypted.")
    last4 = models.CharField(max_length=4, editable=False)
    status = models.CharField(max_length=10, choices=KeyStatus.choices, default=KeyStatus.PENDING)
    is_enabled = models.BooleanField(default=True)
    last_validated_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider__name", "scope", "-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(scope=KeyScope.PLATFORM, tenant__isnull=True, end_user__isnull=True)
                    | Q(scope=KeyScope.TENANT, tenant__isnull=False, end_user__isnull=True)
                    | Q(scope=KeyScope.USER, tenant__isnull=False, end_user__isnull=False)
                ),
                name="%(app_label)s_%(class)s_scope_matches_owner",
            )
        ]
        indexes = [models.Index(fields=["tenant", "provider"], name="providers_key_tenant_prov")]

    def __str__(self) -> str:
        return f"{self.provider} …{self.last4} ({self.get_scope_display()})"

    def set_secret(self, secret: str) -> None:
        self.secret = secret
        self.last4 = secret[-4:]

    def reveal_secret(self) -> str:
        """The plaintext; for the adapter only, never for display."""
        value = self.secret
        return value.reveal() if isinstance(value, SealedSecret) else str(value)

    @property
    def masked(self) -> str:
        return f"••••{self.last4}"

    @property
    def is_usable(self) -> bool:
        return self.is_enabled and self.status in (KeyStatus.ACTIVE, KeyStatus.PENDING)


class ProviderHealthCheck(models.Model):
    """One periodic check of a provider's models list with a platform key (kept a week)."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="health_checks")
    checked_at = models.DateTimeField()
    ok = models.BooleanField()
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True, help_text="Redacted; never the key.")

    class Meta:
        ordering = ["-checked_at"]
        indexes = [
            # The admin's last checks of a provider, and pruning (per provider, by age).
            models.Index(fields=["provider", "-checked_at"], name="providers_check_prov_time"),
        ]

    def __str__(self) -> str:
        return (
            f"{self.provider} {'ok' if self.ok else 'failed'} at {self.checked_at:%Y-%m-%d %H:%M}"
        )


class UpstreamHostAllowance(models.Model):
    """A host staff trust for platform providers: reached without the SSRF guard's checks."""

    host = models.CharField(
        max_length=253,
        unique=True,
        help_text="A host name or IP address exactly as base URLs name it, without scheme or "
        "port, e.g. 10.0.0.5 or llm.internal.example. Platform providers on it may use plain "
        "http and private addresses; tenants' own endpoints may never use it.",
    )
    note = models.CharField(
        max_length=200, blank=True, help_text="Why it is trusted, e.g. “our vLLM cluster”."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["host"]
        verbose_name = "upstream host allowance"

    def __str__(self) -> str:
        return self.host
