from __future__ import annotations

from django.db import models


class Outcome(models.IntegerChoices):
    """How an upstream attempt ended. Small ints keep the usage row lean."""

    SUCCESS = 1, "Success"
    UPSTREAM_ERROR = 2, "Upstream error"
    TIMEOUT = 3, "Timeout"
    CONNECT_ERROR = 4, "Connection error"
    CLIENT_CANCELLED = 5, "Client disconnected"
    CLIENT_ERROR = 6, "Rejected by provider (400)"
    STREAM_ERROR = 7, "Stream broke"


class PowerLevelCode(models.IntegerChoices):
    EXPLICIT = 0, "Explicit model"
    ECO = 1, "Eco"
    BALANCED = 2, "Balanced"
    PRECISION = 3, "Precision"


class KeySource(models.IntegerChoices):
    """Whose provider key paid for the attempt: platform usage draws credits at cost."""

    PLATFORM = 1, "Platform"
    TENANT = 2, "Tenant (BYOK)"
    USER = 3, "End user (BYOK)"


class CapMode(models.TextChoices):
    SOFT = "soft", "Soft (alerts only)"
    HARD = "hard", "Hard (refuse at the cap)"


class CapScope(models.TextChoices):
    TENANT = "tenant", "Whole tenant"
    EACH_USER = "each_user", "Each end user (default)"
    USER = "user", "One end user"


class LedgerKind(models.TextChoices):
    GRANT = "grant", "Grant"
    PURCHASE = "purchase", "Purchase"
    USAGE = "usage", "Platform-key usage"
    PLATFORM_FEE = "platform_fee", "BYOK platform fee"
    ADJUSTMENT = "adjustment", "Adjustment"


class AlertKind(models.TextChoices):
    SPENDING_THRESHOLD = "spending_threshold", "Spending threshold"
    KEY_INVALID = "key_invalid", "Provider key invalid"
    CREDITS_LOW = "credits_low", "Credits low"


DEFAULT_THRESHOLDS = [50, 80, 100]
