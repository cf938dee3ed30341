"""Admin forms for providers and their keys."""

from __future__ import annotations

from django import forms

from config import netguard
from providers import upstream_hosts
from providers.choices import WireProtocol
from providers.models import Provider, ProviderKey, UpstreamHostAllowance
from providers.page_forms import secret_characters
from providers.presets import preset_for


class ProviderAdminForm(forms.ModelForm):
    """Protocol and base URL may be left empty: the kind's preset fills them in."""

    protocol = forms.ChoiceField(
        choices=[("", "(the kind's default)"), *WireProtocol.choices], required=False
    )
    base_url = forms.URLField(
        max_length=300,
        required=False,
        assume_scheme="https",
        help_text="Up to and including the version, e.g. …/v1. Empty: the kind's default.",
    )

    class Meta:
        model = Provider
        fields = ["name", "slug", "kind", "protocol", "base_url", "options", "tenant", "is_enabled"]

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("kind")
        if kind:
            preset = preset_for(kind)
            cleaned["protocol"] = cleaned.get("protocol") or preset.protocol
            cleaned["base_url"] = (cleaned.get("base_url") or preset.base_url).rstrip("/")
            if not cleaned["base_url"]:
                self.add_error("base_url", "This kind has no default URL: enter the endpoint's.")
            else:
                # The gateway's SSRF guard would refuse it at connect time; say so now.
                problem = upstream_hosts.base_url_problem(
                    cleaned["base_url"], tenant_endpoint=cleaned.get("tenant") is not None
                )
                if problem:
                    self.add_error("base_url", problem)
        return cleaned


class UpstreamHostAllowanceAdminForm(forms.ModelForm):
    """A bare host, stored as the guard compares it (lower case, canonical IP)."""

    class Meta:
        model = UpstreamHostAllowance
        fields = ["host", "note"]

    def clean_host(self) -> str:
        host = netguard.normalize_host(self.cleaned_data["host"])
        is_name = netguard.parse_address(host) is None  # an IPv6 address has colons
        if not host or (is_name and any(c in host for c in "/:@?#* ")):
            raise forms.ValidationError(
                "Enter only the host, e.g. 10.0.0.5 or llm.internal.example: no scheme, "
                "port, path or wildcard."
            )
        return host


class ProviderKeyAdminForm(forms.ModelForm):
    """A write-only secret: never rendered back; on change, blank keeps the stored key.

    The model's `secret` field is not part of the form at all, so neither the plaintext nor
    the ciphertext can reach the page; the admin saves through providers.services.
    """

    new_secret = forms.CharField(
        label="API key",
        required=False,
        strip=True,
        validators=[secret_characters],
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )

    class Meta:
        model = ProviderKey
        fields = ["provider", "tenant", "end_user", "label", "is_enabled"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        secret = self.fields["new_secret"]
        if self.instance.pk is None:
            secret.required = True
            secret.help_text = "Stored encrypted; after saving only the last four characters show."
        else:
            secret.help_text = (
                f"Stored key: {self.instance.masked}. Leave blank to keep it; a new key is "
                "pending validation until tested."
            )

    def clean(self):
        cleaned = super().clean()
        if self.instance.pk is not None:
            return cleaned  # the owner fields are read-only on change
        provider = cleaned.get("provider")
        tenant = cleaned.get("tenant")
        end_user = cleaned.get("end_user")
        if end_user is not None:
            if tenant is None:
                tenant = cleaned["tenant"] = end_user.tenant
            elif end_user.tenant_id != tenant.pk:
                self.add_error("end_user", "This end user belongs to another tenant.")
        is_custom = provider is not None and provider.tenant_id is not None
        if is_custom and (tenant is None or tenant.pk != provider.tenant_id):
            self.add_error(
                "tenant",
                f"{provider} is a custom endpoint of {provider.tenant}; its keys belong "
                "to that tenant.",
            )
        return cleaned
