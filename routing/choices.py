from __future__ import annotations

from django.db import models


class PowerLevel(models.TextChoices):
    ECO = "eco", "Eco"
    BALANCED = "balanced", "Balanced"
    PRECISION = "precision", "Precision"


DEFAULT_POWER_LEVEL = PowerLevel.BALANCED
ALIASES = ("auto", "eco", "balanced", "precision")


class ModelMode(models.TextChoices):
    CHAT = "chat", "Chat"
    EMBEDDING = "embedding", "Embedding"
