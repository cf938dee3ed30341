"""Test helper: resubmit an admin add/change page as rendered, with some fields changed."""

from __future__ import annotations

from typing import Any

from django import forms


def _field_data(bound: forms.BoundField) -> Any:
    field, value = bound.field, bound.value()
    if isinstance(field, forms.NullBooleanField):
        return {None: "unknown", True: "true", False: "false"}.get(value, "unknown")
    if isinstance(field, forms.BooleanField):
        return "on" if value else None
    if value is None:
        return ""
    # BoundField.value() is already prepared for the widget (pks, JSON text).
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return str(value)


def changeform_data(response, **changes: Any) -> dict[str, Any]:
    """POST data equal to what the page's forms (and inline formsets) currently hold."""
    data: dict[str, Any] = {}
    all_forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        management = formset.management_form
        for name in management.fields:
            data[management.add_prefix(name)] = management[name].value()
        all_forms.extend(formset.forms)
    for form in all_forms:
        for bound in form:
            value = _field_data(bound)
            if value is not None:
                data[bound.html_name] = value
    for name, value in changes.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    return data
