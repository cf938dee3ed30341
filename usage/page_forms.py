"""Forms of the spending page (caps) and the usage dashboard's filters."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

from django import forms

from usage.choices import DEFAULT_THRESHOLDS, CapMode
from usage.dashboard import DEFAULT_PERIOD, MAX_DAYS, PERIODS

MAX_THRESHOLDS = 10
INT32_MAX = 2**31 - 1  # provider and catalog-model ids are integer columns
INT64_MAX = 2**63 - 1


class ThresholdsField(forms.CharField):
    """Percents of the cap as "50, 80, 100": whole numbers from 1 to 100, at most ten."""

    def to_python(self, value: object) -> list[int]:  # type: ignore[override]
        text = super().to_python(value)
        if not text:
            return []
        percents = []
        for item in re.split(r"[,\s;]+", text.strip().strip(",")):
            if not item:
                continue
            cleaned = item.removesuffix("%")
            if not cleaned.isdigit():
                raise forms.ValidationError(
                    f"“{item}” is not a percent: write whole numbers like 50, 80, 100."
                )
            percent = int(cleaned)
            if not 1 <= percent <= 100:
                raise forms.ValidationError(
                    f"{percent} % is outside 1-100: an alert fires at a share of the cap."
                )
            percents.append(percent)
        percents = sorted(set(percents))
        if len(percents) > MAX_THRESHOLDS:
            raise forms.ValidationError(f"At most {MAX_THRESHOLDS} thresholds.")
        return percents

    def prepare_value(self, value: object) -> object:
        if isinstance(value, list | tuple):
            return ", ".join(str(v) for v in value)
        return value


class CapForm(forms.Form):
    """A monthly cap: amount, soft or hard, alert thresholds, on or off."""

    amount_usd = forms.DecimalField(
        label="Monthly cap (USD)",
        max_digits=14,
        decimal_places=2,
        min_value=Decimal(0),
        error_messages={
            "required": "Enter the cap in US dollars, e.g. 250 or 99.50.",
            "invalid": "Enter the cap as a number of US dollars, e.g. 250 or 99.50.",
            "min_value": "A cap cannot be negative.",
            "max_decimal_places": "Cents at most: two decimal places.",
            "max_digits": "That is more than a cap can hold.",
            "max_whole_digits": "That is more than a cap can hold.",
        },
        widget=forms.NumberInput(attrs={"step": "0.01", "min": "0", "inputmode": "decimal"}),
    )
    mode = forms.ChoiceField(
        choices=CapMode.choices,
        initial=CapMode.HARD,
        widget=forms.RadioSelect,
        error_messages={"required": "Choose soft or hard.", "invalid_choice": "Soft or hard."},
    )
    alert_thresholds = ThresholdsField(
        label="Alert at (% of the cap)",
        required=False,
        max_length=200,
        initial=", ".join(str(t) for t in DEFAULT_THRESHOLDS),
        help_text="Comma-separated percents, e.g. 50, 80, 100. Owners and admins get an email "
        "and an alert here once per threshold and billing period.",
    )
    is_enabled = forms.BooleanField(label="Enabled", required=False, initial=True)


class UserCapForm(CapForm):
    """A cap of one end user, named by the id the tenant's service sends as `user`."""

    end_user = forms.CharField(
        label="End user",
        max_length=128,
        strip=True,
        help_text="The id your service sends as `user` (created if Switchyard has not seen "
        "it yet).",
        error_messages={"required": "Name the end user, e.g. customer-42."},
    )

    field_order = ["end_user", "amount_usd", "mode", "alert_thresholds", "is_enabled"]


class DashboardFilters(forms.Form):
    """The dashboard's GET parameters; every one optional, so a bare URL is valid."""

    period = forms.ChoiceField(choices=list(PERIODS.items()), required=False)
    start = forms.DateField(
        label="From",
        required=False,
        input_formats=["%Y-%m-%d"],
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )
    end = forms.DateField(
        label="To",
        required=False,
        input_formats=["%Y-%m-%d"],
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )
    end_user = forms.CharField(label="End user", max_length=128, required=False, strip=True)
    api_key = forms.IntegerField(label="API key", required=False, min_value=1, max_value=INT64_MAX)
    provider = forms.IntegerField(required=False, min_value=1, max_value=INT32_MAX)
    model = forms.IntegerField(required=False, min_value=1, max_value=INT32_MAX)

    def clean_period(self) -> str:
        return self.cleaned_data.get("period") or DEFAULT_PERIOD

    def clean(self) -> dict:
        data = super().clean()
        period = data.get("period")
        start: date | None = data.get("start")
        end: date | None = data.get("end")
        if period == "custom":
            if start is None or end is None:
                raise forms.ValidationError("Custom dates need both a first and a last day.")
            if start > end:
                raise forms.ValidationError("The first day is after the last day.")
            if (end - start).days + 1 > MAX_DAYS:
                raise forms.ValidationError(f"Choose at most {MAX_DAYS} days.")
        return data
