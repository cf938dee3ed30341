from __future__ import annotations

from django.db import models


class WireProtocol(models.TextChoices):
    OPENAI = "openai", "OpenAI-compatible"
    ANTHROPIC = "anthropic", "Anthropic Messages"
    GEMINI = "gemini", "Google Gemini"


class ProviderKind(models.TextChoices):
    OPENAI = "openai", "OpenAI"
    AZURE_OPENAI = "azure_openai", "Azure OpenAI"
    ANTHROPIC = "anthropic", "Anthropic"
    GROQ = "groq", "Groq"
    OPENROUTER = "openrouter", "OpenRouter"
    TOGETHER = "together", "Together"
    FIREWORKS = "fireworks", "Fireworks"
    MISTRAL = "mistral", "Mistral"
    DEEPSEEK = "deepseek", "DeepSeek"
    GEMINI = "gemini", "Google Gemini"
    OLLAMA = "ollama", "Ollama"
    VLLM = "vllm", "vLLM"
    LMSTUDIO = "lmstudio", "LM Studio"
    SIMULATOR = "simulator", "Switchyard simulator"
    CUSTOM = "custom", "Custom OpenAI-compatible"


class KeyScope(models.TextChoices):
    PLATFORM = "platform", "Platform"
    TENANT = "tenant", "Tenant"
    USER = "user", "End user"


class KeyStatus(models.TextChoices):
    PENDING = "pending", "Pending validation"
    ACTIVE = "active", "Active"
    INVALID = "invalid", "Invalid"
    DISABLED = "disabled", "Disabled"


class HealthStatus(models.TextChoices):
    UNKNOWN = "unknown", "Unknown"
    HEALTHY = "healthy", "Healthy"
    DEGRADED = "degraded", "Degraded"
    DOWN = "down", "Down"
