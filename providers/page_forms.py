"""Forms of the tenant's provider-keys page. Secrets are write-only: never rendered back."""

from __future__ import annotations

from django import forms
from django.core.validators import RegexValidator

from providers.choices import WireProtocol
from providers.models import Provider
from providers.selectors import providers_for
from tenants.models import Tenant

# The protocols providers.validation can check with a live request; a key for any other
# could not be validated before saving, so the page does not offer it.
VALIDATABLE_PROTOCOLS = (WireProtocol.OPENAI, WireProtocol.ANTHROPIC)

SCOPE_TENANT = "tenant"
SCOPE_MINE = "mine"


# A key travels in an HTTP header, so it is printable ASCII without spaces; anything else is
# a paste gone wrong, and would fail (or be mangled) on its way to the provider.
secret_characters = RegexValidator(
    r"\A[\x21-\x7e]+\Z",
    "An API key is letters, digits and punctuation, without spaces or other characters: "
    "paste it exactly as the provider shows it.",
)


def _secret_field() -> forms.CharField:
    return forms.CharField(
        label="API key",
        strip=True,
        max_length=1000,
        validators=[secret_characters],
        help_text="Checked with a 5-token request before it is saved, then stored encrypted. "
        "Only the last four characters are shown afterwards.",
        widget=forms.PasswordInput(
            render_value=False,
            attrs={"autocomplete": "new-password", "spellcheck": "false", "autocapitalize": "off"},
        ),
    )


class AddProviderKeyForm(forms.Form):
    """Provider, label, secret and whose key it is (the tenant's: managers only)."""

    provider = forms.ModelChoiceField(
        queryset=Provider.objects.none(), empty_label="Choose a provider…"
    )
    label = forms.CharField(
        max_length=100,
        required=False,
        help_text="Optional, to tell keys apart, e.g. “production”.",
    )
    secret = _secret_field()
    scope = forms.ChoiceField(label="Used for", widget=forms.RadioSelect)

    def __init__(self, *args, tenant: Tenant, can_manage: bool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["provider"].queryset = (
            providers_for(tenant=tenant).filter(protocol__in=VALIDATABLE_PROTOCOLS).order_by("name")
        )
        mine = (SCOPE_MINE, "Just for me: requests made as me use it first")
        if can_manage:
            self.fields["scope"].choices = [
                (SCOPE_TENANT, f"All of {tenant.name}: every request may use it"),
                mine,
            ]
            self.fields["scope"].initial = SCOPE_TENANT
        else:
            self.fields["scope"].choices = [mine]
            self.fields["scope"].initial = SCOPE_MINE


class ReplaceSecretForm(forms.Form):
    """A new secret for an existing key."""

    secret = _secret_field()
