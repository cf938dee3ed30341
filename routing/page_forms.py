"""Forms of the power-level page: the tenant default (managers) and a member's own override.

They check shape and ranges; routing.services.set_llm_settings checks the rules (model names,
providers the tenant may use) and raises ValidationError by field, which the view puts back
on the form.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms

from providers.models import Provider
from providers.selectors import providers_for
from routing.choices import PowerLevel
from routing.selectors import unknown_model_names
from routing.services import unknown_models_message
from tenants.models import Tenant

INHERIT = ""
FAILOVER_CHOICES = [(INHERIT, "Inherit the tenant default"), ("on", "On"), ("off", "Off")]
MODEL_SEPARATORS = re.compile(r"[,\n]+")
# The gateway's bound on a request's max_tokens (routing/gateway/requests.py).
MAX_TOKENS_BOUND = 1_000_000


def _temperature() -> forms.FloatField:
    message = "Temperature must be a number from 0 to 2."
    return forms.FloatField(
        label="Default temperature",
        required=False,
        error_messages={"invalid": message, "min_value": message, "max_value": message},
        min_value=0,
        max_value=2,
        widget=forms.NumberInput(attrs={"step": "0.1", "min": "0", "max": "2"}),
        help_text="From 0 to 2, used when a request sets none. Empty: the provider's default.",
    )


def _max_tokens() -> forms.IntegerField:
    message = f"Max tokens must be a whole number from 1 to {MAX_TOKENS_BOUND:,}."
    return forms.IntegerField(
        label="Default max tokens",
        required=False,
        error_messages={"invalid": message, "min_value": message, "max_value": message},
        min_value=1,
        max_value=MAX_TOKENS_BOUND,
        widget=forms.NumberInput(attrs={"min": "1", "step": "1"}),
        help_text="Used when a request sets none. Empty: the model's own limit.",
    )


class ModelNamesField(forms.CharField):
    """Catalog model names, separated by commas or spaces; a list when cleaned."""

    def to_python(self, value: Any) -> list[str]:
        text = super().to_python(value)
        names = (n.strip() for n in MODEL_SEPARATORS.split(text))
        return list(dict.fromkeys(n for n in names if n))

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | tuple | set | frozenset):
            return ", ".join(sorted(value))
        return value


class _SettingsForm(forms.Form):
    preferred_providers = forms.ModelMultipleChoiceField(
        queryset=Provider.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Their models go first in every chain, in score order.",
    )
    preferred_models = ModelNamesField(
        required=False,
        widget=forms.TextInput(
            attrs={"autocomplete": "off", "spellcheck": "false", "placeholder": "e.g. gpt-4o-mini"}
        ),
        help_text="Catalog model names, separated by commas; they go first in every chain.",
    )
    default_temperature = _temperature()
    default_max_tokens = _max_tokens()

    def __init__(self, *args: Any, tenant: Tenant, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tenant = tenant
        self.fields["preferred_providers"].queryset = providers_for(tenant=tenant).order_by("name")

    def clean_preferred_models(self) -> list[str]:
        # The service checks this too; asking here reports it with the other fields' errors.
        names = self.cleaned_data["preferred_models"]
        unknown = unknown_model_names(tenant=self.tenant, names=names) if names else []
        if unknown:
            raise forms.ValidationError(unknown_models_message(unknown))
        return names

    def settings_fields(self) -> dict[str, Any]:
        """The cleaned values as set_llm_settings takes them."""
        return dict(self.cleaned_data)


class TenantSettingsForm(_SettingsForm):
    """The tenant's default: every request of the tenant gets it unless a user overrides it."""

    power_level = forms.ChoiceField(
        choices=PowerLevel.choices, widget=forms.RadioSelect, label="Default power level"
    )
    auto_failover = forms.BooleanField(
        required=False,
        label="Auto-failover",
        help_text="When a model fails, try the next candidate instead of returning the error.",
    )
    system_prompt = forms.CharField(
        required=False,
        max_length=8000,
        widget=forms.Textarea(attrs={"rows": 4}),
        label="System prompt",
        help_text="Put before the messages of every request of the tenant.",
    )

    field_order = [
        "power_level",
        "preferred_providers",
        "preferred_models",
        "auto_failover",
        "default_temperature",
        "default_max_tokens",
        "system_prompt",
    ]


class MySettingsForm(_SettingsForm):
    """A member's own override; every empty field inherits the tenant default."""

    power_level = forms.ChoiceField(
        choices=[(INHERIT, "Inherit tenant default"), *PowerLevel.choices],
        required=False,
        widget=forms.RadioSelect,
        label="My power level",
    )
    auto_failover = forms.ChoiceField(
        choices=FAILOVER_CHOICES, required=False, label="Auto-failover"
    )

    field_order = [
        "power_level",
        "preferred_providers",
        "preferred_models",
        "auto_failover",
        "default_temperature",
        "default_max_tokens",
    ]

    def clean_auto_failover(self) -> bool | None:
        return {"on": True, "off": False}.get(self.cleaned_data.get("auto_failover") or "")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["preferred_providers"].help_text = (
            "Empty: the tenant's preferred providers. "
            + self.fields["preferred_providers"].help_text
        )
        self.fields["preferred_models"].help_text = (
            "Empty: the tenant's preferred models. " + self.fields["preferred_models"].help_text
        )


def failover_choice(value: bool | None) -> str:
    """A stored auto-failover value as MySettingsForm's choice."""
    return {True: "on", False: "off"}.get(value, INHERIT)
