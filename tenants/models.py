from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from tenants.choices import DEFAULT_SCOPES, Role, Scope
from tenants.crypto import EncryptedTextField

API_KEY_PREFIX = "sy-"
# Characters of the key shown in lists: enough to tell keys apart, far too few to guess.
API_KEY_DISPLAY_CHARS = 10

slug_validator = RegexValidator(r"^[a-z0-9][a-z0-9-]{1,62}$", "Lowercase letters, digits, dashes.")


class Plan(models.Model):
    """A tier: rate limits, whether platform keys may be used, the BYOK platform fee."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=60)
    requests_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Empty = unlimited."
    )
    requests_per_hour = models.PositiveIntegerField(
        null=True, blank=True, help_text="Empty = unlimited."
    )
    requests_per_day = models.PositiveIntegerField(
        null=True, blank=True, help_text="Empty = unlimited."
    )
    tokens_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Empty = unlimited."
    )
    allows_platform_keys = models.BooleanField(
        default=True, help_text="Tenants on this plan may use the platform's provider keys."
    )
    platform_fee_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal("10.00"),
        validators=[MinValueValidator(Decimal(0))],
        help_text="Charged on the cost of BYOK requests, drawn from credits.",
    )
    prepaid = models.BooleanField(
        default=True,
        help_text="Requests need credits: platform-key usage draws its cost, BYOK usage the fee. "
        "Off for invoiced plans (usage is still written to the ledger).",
    )
    sort_order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "name"]

    def __str__(self) -> str:
        return self.name


class Tenant(models.Model):
    """An organisation: its members, keys, settings and usage belong to it."""

    name = models.CharField(max_length=120)
    slug = models.CharField(max_length=63, unique=True, validators=[slug_validator])
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="tenants")
    is_active = models.BooleanField(
        default=True, help_text="A suspended tenant's requests get 403."
    )
    billing_day = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1)],
        help_text="Day of the month the billing period (caps, alerts) starts; 1-28.",
    )
    webhook_url = models.URLField(blank=True, help_text="Optional: alerts are POSTed here, signed.")
    # Not editable in forms: a model form would render the mask and save it back as the
    # secret. It is set by usage.services.rotate_webhook_secret, which shows it once.
    webhook_secret = EncryptedTextField(
        blank=True, editable=False, help_text="HMAC-SHA256 key of the webhook signature."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(billing_day__gte=1, billing_day__lte=28),
                name="%(app_label)s_%(class)s_billing_day_range",
            )
        ]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A login user's role in a tenant; a user may belong to several tenants."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "user"], name="%(app_label)s_%(class)s_once")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant} ({self.role})"

    @property
    def can_manage(self) -> bool:
        return self.role in (Role.OWNER, Role.ADMIN)


class EndUser(models.Model):
    """Someone a tenant serves: named by the tenant's own id (OpenAI's `user` field)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="end_users")
    external_id = models.CharField(max_length=128, help_text="The id the tenant's service sends.")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="end_user_profiles",
        help_text="Optional: the login user this end user is (their own keys and settings).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "external_id"], name="%(app_label)s_%(class)s_unique_external_id"
            ),
            models.UniqueConstraint(
                fields=["tenant", "user"],
                condition=Q(user__isnull=False),
                name="%(app_label)s_%(class)s_one_profile_per_user",
            ),
        ]

    def __str__(self) -> str:
        return self.external_id


def hash_api_key(raw: str) -> str:
    """SHA-256 of a key: keys are 256-bit random, so a fast hash is as safe as a slow one."""
    return hashlib.sha256(raw.encode()).hexdigest()


class TenantAPIKey(models.Model):
    """A service's credential: stored as a hash, shown once at creation."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(
        max_length=16, editable=False, help_text="Start of the key, for telling keys apart."
    )
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(default=list, blank=True)
    end_user = models.ForeignKey(
        EndUser,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="api_keys",
        help_text="Optional: every request with this key acts for this end user.",
    )
    requests_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Optional: lower than the plan's limit."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "tenant API key"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def generate() -> str:
        return API_KEY_PREFIX + secrets.token_urlsafe(32)

    def set_key(self, raw: str) -> None:
        self.prefix = raw[:API_KEY_DISPLAY_CHARS]
        self.key_hash = hash_api_key(raw)

    def matches(self, raw: str) -> bool:
        return hmac.compare_digest(self.key_hash, hash_api_key(raw))

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def has_scope(self, scope: str) -> bool:
        return scope in (self.scopes or [])


class AuditLog(models.Model):
    """Who did what to which key, setting or tenant, when and from where. Append-only."""

    # A default rather than auto_now_add: batched writers (the router's sampled key use)
    # stamp the time their batch was seen, not the time it was flushed.
    created_at = models.DateTimeField(default=timezone.now, db_index=True, editable=False)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    actor_label = models.CharField(
        max_length=150, blank=True, help_text="Who, as shown then (user, API key, system)."
    )
    tenant = models.ForeignKey(
        Tenant, on_delete=models.SET_NULL, null=True, blank=True, related_name="audit_entries"
    )
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_repr = models.CharField(max_length=200, blank=True)
    changes = models.JSONField(default=dict, blank=True)
    ip_address = models.GenericIPAddressField(
        null=True, blank=True, help_text="The client's address (behind trusted proxies only)."
    )
    user_agent = models.CharField(max_length=200, blank=True, help_text="Trimmed.")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["tenant", "created_at"], name="tenants_audit_tenant_time"),
            # "What happened to this key?", and the hourly sample of key use looks up here.
            models.Index(
                fields=["target_type", "target_id", "created_at"], name="tenants_audit_target_time"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.target_repr}"


# An invitation link is good for a week: long enough to be read, short enough to go stale.
INVITATION_LIFETIME = timedelta(days=7)


def hash_invitation_token(raw: str) -> str:
    """SHA-256 of an invitation token (256-bit random, like API keys: a fast hash is enough)."""
    return hashlib.sha256(raw.encode()).hexdigest()


class Invitation(models.Model):
    """An emailed offer of a role in a tenant; the link's token is stored only as a hash."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.email} to {self.tenant} ({self.role})"

    @staticmethod
    def generate_token() -> str:
        return secrets.token_urlsafe(32)

    def set_token(self, raw: str) -> None:
        self.token_hash = hash_invitation_token(raw)

    def is_expired(self, now: datetime) -> bool:
        return now >= self.expires_at

    def is_pending(self, now: datetime) -> bool:
        return self.accepted_at is None and not self.is_expired(now)


__all__ = [
    "DEFAULT_SCOPES",
    "AuditLog",
    "EndUser",
    "Invitation",
    "Membership",
    "Plan",
    "Role",
    "Scope",
    "Tenant",
    "TenantAPIKey",
]
