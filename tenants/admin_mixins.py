"""Admin building blocks shared by every app: audited saves and read-only model admins.

Staff edits to configuration (plans, tenants, catalog, routing policies, settings, caps) are
plain ModelAdmin saves; this mixin makes each one leave an audit entry with the changed
fields and announce a new configuration version once the admin's transaction commits, so
the gateway picks the change up without a restart. Writes that have a service of their own
(provider keys, API keys, credits) call that service instead.
"""

from __future__ import annotations

import datetime
import decimal
import functools
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.core.exceptions import FieldDoesNotExist
from django.db import models, transaction
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from tenants import audit, config_version
from tenants.crypto import MASK, EncryptedTextField
from tenants.models import Tenant

# Shown instead of any value of a secret field in an audit entry.
SECRET_CHANGED = f"{MASK} (changed)"


def _is_secret(form: forms.BaseForm, name: str) -> bool:
    field = form.fields.get(name)
    if field is not None and isinstance(field.widget, forms.PasswordInput):
        return True
    model = getattr(getattr(form, "_meta", None), "model", None)
    if model is None:
        return False
    try:
        return isinstance(model._meta.get_field(name), EncryptedTextField)
    except FieldDoesNotExist:  # a form-only field
        return False


def _plain(field: forms.Field | None, value: Any) -> Any:
    """`value` as JSON-safe data an auditor can read (objects by name, money as text)."""
    if value is None or isinstance(value, bool | int | float | str):
        if isinstance(field, forms.ModelChoiceField) and value not in (None, ""):
            # A model form's initial holds the related row's pk; show its name instead.
            related = field.queryset.model._default_manager.filter(pk=value).first()
            return str(related) if related is not None else value
        return value
    if isinstance(value, models.Model):
        return str(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(None, v) for k, v in value.items()}
    if isinstance(value, models.QuerySet | list | tuple | set):
        items = [_plain(None, v) for v in value]
        return sorted(items, key=str) if isinstance(value, models.QuerySet | set) else items
    return str(value)


def form_changes(form: forms.BaseForm, *, change: bool) -> dict[str, Any]:
    """{field: [old, new]} for every changed field of a bound, valid form; secrets masked."""
    changes: dict[str, Any] = {}
    for name in form.changed_data:
        if _is_secret(form, name):
            changes[name] = SECRET_CHANGED
            continue
        field = form.fields.get(name)
        old = _plain(field, form.initial.get(name)) if change else None
        new = _plain(field, form.cleaned_data.get(name))
        if old != new:
            changes[name] = [old, new]
    return changes


def audit_tenant_of(obj: models.Model) -> Tenant | None:
    """The tenant a row belongs to, for the audit entry (None for platform rows)."""
    if isinstance(obj, Tenant):
        return obj
    if any(f.name == "tenant" for f in obj._meta.concrete_fields):
        return getattr(obj, "tenant", None)
    return None


def bump_config_on_commit(tenant: Tenant | None) -> None:
    tenant_id = tenant.pk if tenant is not None else None
    transaction.on_commit(lambda: config_version.bump(tenant_id=tenant_id))


# Row ids kept in an action's audit entry; the count says how many more there were.
ACTION_IDS_KEPT = 50


def _audited_action(func: Callable, name: str) -> Callable:
    @functools.wraps(func)  # keeps `allowed_permissions`, which the admin checks
    def run(modeladmin, request, queryset):
        confirmed = name != "delete_selected" or bool(request.POST.get("post"))
        if confirmed:
            # Read before the action runs: after a deletion the selection is empty.
            ids = [str(pk) for pk in queryset.values_list("pk", flat=True)[: ACTION_IDS_KEPT + 1]]
            count = len(ids) if len(ids) <= ACTION_IDS_KEPT else queryset.count()
        response = func(modeladmin, request, queryset)
        if confirmed:
            origin = audit.origin_of(request)
            audit.record(
                actor=request.user,
                action="admin.action_run",
                changes={
                    "action": name,
                    "model": modeladmin.model._meta.label_lower,
                    "count": count,
                    "ids": ids[:ACTION_IDS_KEPT],
                },
                ip_address=origin.ip_address,
                user_agent=origin.user_agent,
            )
        return response

    return run


class AuditedActionsMixin:
    """Every changelist action staff run (bulk enable, "test key", delete selected...) leaves
    one `admin.action_run` entry naming the action, the model and the selected rows, on top
    of what the services the action calls record for each row. Delete-selected counts once
    confirmed; its confirmation page changes nothing."""

    def get_actions(self, request):
        actions = super().get_actions(request)  # type: ignore[misc]
        return {
            name: (_audited_action(func, name), name, description)
            for name, (func, _, description) in actions.items()
        }


class AuditedAdminMixin(AuditedActionsMixin):
    """Records every add, change and delete in the audit log; bumps the config version.

    `audit_noun` names the action (`plan.updated`); `audit_bumps_config` is off for rows the
    gateway does not read. Inline rows are audited under their own model's noun.
    """

    audit_noun: str = ""
    audit_bumps_config: bool = True

    def get_audit_noun(self, model: type[models.Model]) -> str:
        if model is getattr(self, "model", None):
            return self.audit_noun or model._meta.model_name or "object"
        # An inline's rows are named as their own admin names them (Membership: "member").
        registered = self.admin_site._registry.get(model)  # type: ignore[attr-defined]
        if isinstance(registered, AuditedAdminMixin):
            return registered.get_audit_noun(model)
        return model._meta.model_name or "object"

    def record_audit(
        self,
        request,
        obj: models.Model,
        *,
        verb: str,
        changes: Mapping[str, Any] | None = None,
        tenant: Tenant | None = None,
    ) -> None:
        """One audit entry for `obj`, and a config bump after commit (when configured)."""
        tenant = tenant if tenant is not None else audit_tenant_of(obj)
        # A deleted tenant cannot be the entry's tenant: keep the entry, drop the link.
        if tenant is not None and tenant.pk is None:
            tenant = None
        origin = audit.origin_of(request)
        audit.record(
            actor=request.user,
            tenant=tenant,
            action=f"{self.get_audit_noun(type(obj))}.{verb}",
            target=obj,
            changes=changes,
            ip_address=origin.ip_address,
            user_agent=origin.user_agent,
        )
        if self.audit_bumps_config:
            bump_config_on_commit(tenant)

    def save_model(self, request, obj, form, change):
        changes = form_changes(form, change=change)
        super().save_model(request, obj, form, change)  # type: ignore[misc]
        if changes or not change:
            self.record_audit(
                request, obj, verb="updated" if change else "created", changes=changes
            )

    def delete_model(self, request, obj):
        # The entry is written first so it still knows the row's id and name.
        self.record_audit(request, obj, verb="deleted")
        super().delete_model(request, obj)  # type: ignore[misc]

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.record_audit(request, obj, verb="deleted")
        super().delete_queryset(request, queryset)  # type: ignore[misc]

    def save_formset(self, request, form, formset, change):
        audited: list[tuple[models.Model, str, dict[str, Any]]] = []
        deleted = formset.deleted_forms if formset.can_delete else []
        for inline_form in formset.forms:
            if not hasattr(inline_form, "cleaned_data") or not inline_form.has_changed():
                continue
            instance = inline_form.instance
            if inline_form in deleted:
                if instance.pk is not None:
                    self.record_audit(request, instance, verb="deleted")
                continue
            is_change = instance.pk is not None
            audited.append(
                (
                    instance,
                    "updated" if is_change else "created",
                    form_changes(inline_form, change=is_change),
                )
            )
        super().save_formset(request, form, formset, change)  # type: ignore[misc]
        for instance, verb, changes in audited:
            self.record_audit(request, instance, verb=verb, changes=changes)


class ReadOnlyAdminMixin:
    """Visible to staff, never written through the admin (usage, audit log)."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


def adopt_saved(target: models.Model, saved: models.Model) -> None:
    """Copy a row a service saved onto the admin's instance (redirects and logs need its pk)."""
    for field in saved._meta.concrete_fields:
        setattr(target, field.attname, getattr(saved, field.attname))
    target._state.adding = False
    target._state.db = saved._state.db


def admin_link(obj: models.Model | None, text: str | None = None) -> str:
    """HTML link to `obj`'s admin change page (or "—")."""
    if obj is None:
        return "—"
    opts = obj._meta
    try:
        url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    except NoReverseMatch:
        return str(text or obj)
    return format_html('<a href="{}">{}</a>', url, text or obj)


def changelist_link(model: type[models.Model], text: object, **filters: object) -> str:
    """HTML link to `model`'s changelist filtered by `filters` (e.g. tenant__id__exact=3)."""
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    if filters:
        url = f"{url}?{urlencode(filters)}"
    return format_html('<a href="{}">{}</a>', url, text)


__all__ = [
    "AuditedActionsMixin",
    "AuditedAdminMixin",
    "ReadOnlyAdminMixin",
    "admin_link",
    "adopt_saved",
    "audit_tenant_of",
    "bump_config_on_commit",
    "changelist_link",
    "form_changes",
]
