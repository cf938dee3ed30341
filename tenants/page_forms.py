"""Forms of the tenant's API keys and members pages, and of the invitation page."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import (
    password_validators_help_texts,
    validate_password,
)
from django.contrib.auth.validators import UnicodeUsernameValidator

from tenants.choices import DEFAULT_SCOPES, Role, Scope
from tenants.models import Tenant


class APIKeyCreateForm(forms.Form):
    """Name, scopes, an optional bound end user and an optional per-key rate limit."""

    name = forms.CharField(
        max_length=100, help_text="What uses the key, e.g. “support bot (production)”."
    )
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices,
        initial=[str(s) for s in DEFAULT_SCOPES],
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one scope: a key without one can do nothing."},
    )
    end_user = forms.CharField(
        label="Bound end user",
        max_length=128,
        required=False,
        help_text="Every request with this key acts for this end user (your id for them); "
        "created if new.",
    )
    requests_per_minute = forms.IntegerField(
        label="Requests per minute",
        required=False,
        min_value=1,
        help_text="A limit for this key alone, below the plan's.",
    )

    def __init__(self, *args, tenant: Tenant, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.plan_limit = tenant.plan.requests_per_minute
        if self.plan_limit:
            limit = self.fields["requests_per_minute"]
            limit.help_text = f"A limit for this key alone; the plan allows {self.plan_limit}."

    def clean_requests_per_minute(self) -> int | None:
        value = self.cleaned_data.get("requests_per_minute")
        if value and self.plan_limit and value > self.plan_limit:
            raise forms.ValidationError(
                f"Your plan allows {self.plan_limit} requests per minute; a key's limit can "
                "only be lower."
            )
        return value


def _role_choices(*, is_owner: bool) -> list[tuple[str, str]]:
    """Owners may hand out every role; admins every role but owner."""
    return [c for c in Role.choices if is_owner or c[0] != Role.OWNER]


class InviteForm(forms.Form):
    email = forms.EmailField(label="Email address")
    role = forms.ChoiceField(initial=Role.MEMBER)

    def __init__(self, *args, is_owner: bool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = _role_choices(is_owner=is_owner)


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class SignupForm(forms.Form):
    """An account for an invited person: the email is the invitation's."""

    username = forms.CharField(
        max_length=150,
        validators=[UnicodeUsernameValidator()],
        help_text="Letters, digits and @ . + - _ only.",
        widget=forms.TextInput(attrs={"autocomplete": "username", "autocapitalize": "none"}),
    )
    password1 = forms.CharField(
        label="Password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=" ".join(password_validators_help_texts()),
    )
    password2 = forms.CharField(
        label="Password again",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def __init__(self, *args, email: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.email = email

    def clean_username(self) -> str:
        username = self.cleaned_data["username"]
        if get_user_model().objects.filter(username__iexact=username).exists():
            raise forms.ValidationError("That username is taken: choose another, or log in.")
        return username

    def clean(self) -> dict:
        cleaned = super().clean()
        password, again = cleaned.get("password1"), cleaned.get("password2")
        if password and again and password != again:
            self.add_error("password2", "The two passwords differ.")
        elif password:
            user = get_user_model()(username=cleaned.get("username", ""), email=self.email)
            try:
                validate_password(password, user)
            except forms.ValidationError as exc:
                self.add_error("password1", exc)
        return cleaned


# What the audit page filters by: the noun of an action (no DISTINCT over the whole log).
AUDIT_ACTION_GROUPS = [
    ("", "Everything"),
    ("provider_key.", "Provider keys"),
    ("api_key.", "API keys"),
    ("member.", "Members and invitations"),
    ("llm_settings.", "Power level and settings"),
    ("spending_cap.", "Spending caps"),
    ("credits.", "Credits"),
    ("tenant.", "Tenant"),
    ("audit_log.", "Audit log exports"),
]


class AuditFilterForm(forms.Form):
    """The audit page's filters: a kind of action and a date range (both ends included)."""

    action = forms.ChoiceField(choices=AUDIT_ACTION_GROUPS, required=False, label="What")
    since = forms.DateField(
        required=False,
        label="From",
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )
    until = forms.DateField(
        required=False,
        label="To",
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )

    def clean(self):
        cleaned = super().clean()
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and since > until:
            raise forms.ValidationError("“From” must not be after “To”.")
        return cleaned
