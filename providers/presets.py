"""What Switchyard knows about each provider kind: protocol, default base URL, auth header.

Vendors that speak OpenAI's protocol differ only in base URL and auth header, so they are
presets of one adapter, not adapters of their own.
"""

from __future__ import annotations

from dataclasses import dataclass

from providers.choices import ProviderKind, WireProtocol


@dataclass(frozen=True, slots=True)
class Preset:
    protocol: str
    base_url: str
    # "bearer" (Authorization: Bearer), "api-key" (Azure), "x-api-key" (Anthropic), "none".
    auth: str = "bearer"
    # Key of this provider in the pricing map's `litellm_provider` field.
    pricing_provider: str = ""


PRESETS: dict[str, Preset] = {
    ProviderKind.OPENAI: Preset(
        WireProtocol.OPENAI, "https://api.openai.com/v1", pricing_provider="openai"
    ),
    ProviderKind.AZURE_OPENAI: Preset(
        WireProtocol.OPENAI, "", auth="api-key", pricing_provider="azure"
    ),
    ProviderKind.ANTHROPIC: Preset(
        WireProtocol.ANTHROPIC,
        "https://api.anthropic.com/v1",
        auth="x-api-key",
        pricing_provider="anthropic",
    ),
    ProviderKind.GROQ: Preset(
        WireProtocol.OPENAI, "https://api.groq.com/openai/v1", pricing_provider="groq"
    ),
    ProviderKind.OPENROUTER: Preset(
        WireProtocol.OPENAI, "https://openrouter.ai/api/v1", pricing_provider="openrouter"
    ),
    ProviderKind.TOGETHER: Preset(
        WireProtocol.OPENAI, "https://api.together.xyz/v1", pricing_provider="together_ai"
    ),
    ProviderKind.FIREWORKS: Preset(
        WireProtocol.OPENAI,
        "https://api.fireworks.ai/inference/v1",
        pricing_provider="fireworks_ai",
    ),
    ProviderKind.MISTRAL: Preset(
        WireProtocol.OPENAI, "https://api.mistral.ai/v1", pricing_provider="mistral"
    ),
    ProviderKind.DEEPSEEK: Preset(
        WireProtocol.OPENAI, "https://api.deepseek.com/v1", pricing_provider="deepseek"
    ),
    ProviderKind.GEMINI: Preset(
        WireProtocol.GEMINI,
        "https://generativelanguage.googleapis.com/v1beta",
        pricing_provider="gemini",
    ),
    ProviderKind.OLLAMA: Preset(
        WireProtocol.OPENAI, "http://127.0.0.1:11434/v1", auth="none", pricing_provider="ollama"
    ),
    ProviderKind.VLLM: Preset(WireProtocol.OPENAI, "http://127.0.0.1:8000/v1", auth="none"),
    ProviderKind.LMSTUDIO: Preset(WireProtocol.OPENAI, "http://127.0.0.1:1234/v1", auth="none"),
    ProviderKind.SIMULATOR: Preset(WireProtocol.OPENAI, "http://127.0.0.1:9100/v1"),
    ProviderKind.CUSTOM: Preset(WireProtocol.OPENAI, ""),
}


def preset_for(kind: str) -> Preset:
    return PRESETS.get(kind, PRESETS[ProviderKind.CUSTOM])
