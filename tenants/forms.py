"""Admin forms for tenants' rows that need more than a plain ModelForm."""

from __future__ import annotations

from django import forms

from tenants.choices import DEFAULT_SCOPES, Scope
from tenants.models import TenantAPIKey


class TenantAPIKeyAdminForm(forms.ModelForm):
    """Staff create a service key: scopes as checkboxes; the raw key is never a field."""

    scopes = forms.MultipleChoiceField(
        choices=Scope.choices,
        initial=[str(s) for s in DEFAULT_SCOPES],
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one scope: a key without one can do nothing."},
    )

    class Meta:
        model = TenantAPIKey
        fields = ["tenant", "name", "scopes", "end_user", "requests_per_minute"]

    def clean(self):
        cleaned = super().clean()
        # On change the owner fields are read-only (absent); the key keeps its owner.
        tenant = cleaned.get("tenant", self.instance.tenant if self.instance.pk else None)
        end_user = cleaned.get("end_user")
        if end_user is not None and tenant is not None and end_user.tenant_id != tenant.pk:
            self.add_error("end_user", "This end user belongs to another tenant.")
        return cleaned
