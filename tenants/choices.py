from __future__ import annotations

from django.db import models


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"
    VIEWER = "viewer", "Viewer"


class Scope(models.TextChoices):
    """What a tenant API key may do."""

    COMPLETIONS = "completions", "Chat completions"
    EMBEDDINGS = "embeddings", "Embeddings"
    MODELS = "models", "List models"
    USAGE_READ = "usage:read", "Read usage, credits and limits"
    MANAGE = "manage", "Manage settings and keys"


DEFAULT_SCOPES = [Scope.COMPLETIONS, Scope.EMBEDDINGS, Scope.MODELS]
