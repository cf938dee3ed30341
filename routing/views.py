"""Tenant pages of routing: the power level (what each level does, the tenant default, a
member's override) and the playground, which calls the gateway from the browser."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from routing import selectors
from routing.choices import PowerLevel
from routing.page_forms import MySettingsForm, TenantSettingsForm, failover_choice
from routing.services import set_llm_settings
from tenants.models import EndUser
from tenants.rbac import MANAGERS, USERS, tenant_page
from tenants.selectors import end_users
from tenants.services import end_user_for_login


def _my_end_user(request) -> EndUser | None:
    """The member's end-user profile in the active tenant, if it exists yet (no write)."""
    return end_users(tenant=request.tenant).filter(user=request.user).first()


def _tenant_initial(view: selectors.PowerLevelView, row) -> dict[str, Any]:
    effective = view.tenant_settings
    return {
        "power_level": effective.power_level,
        "auto_failover": effective.auto_failover,
        "preferred_providers": list(row.preferred_providers.all()) if row else [],
        "preferred_models": list(row.preferred_models) if row else [],
        "default_temperature": row.default_temperature if row else None,
        "default_max_tokens": row.default_max_tokens if row else None,
        "system_prompt": row.system_prompt if row else "",
    }


def _my_initial(row) -> dict[str, Any]:
    if row is None:
        return {"power_level": "", "auto_failover": ""}
    return {
        "power_level": row.power_level,
        "auto_failover": failover_choice(row.auto_failover),
        "preferred_providers": list(row.preferred_providers.all()),
        "preferred_models": list(row.preferred_models),
        "default_temperature": row.default_temperature,
        "default_max_tokens": row.default_max_tokens,
    }


def _settings_page(
    request,
    *,
    end_user: EndUser | None,
    tenant_form: TenantSettingsForm | None = None,
    my_form: MySettingsForm | None = None,
    status: int = 200,
):
    tenant = request.tenant
    view = selectors.power_level_view(tenant=tenant, end_user=end_user)
    tenant_row = selectors.get_settings_row(tenant=tenant)
    my_row = selectors.get_settings_row(tenant=tenant, end_user=end_user) if end_user else None
    if tenant_form is None:
        tenant_form = TenantSettingsForm(tenant=tenant, initial=_tenant_initial(view, tenant_row))
    if my_form is None:
        my_form = MySettingsForm(tenant=tenant, initial=_my_initial(my_row))
    context = {
        "view": view,
        "tenant_form": tenant_form,
        "my_form": my_form,
        "tenant_level_label": _label(view.tenant_settings.power_level),
        "my_level_label": _label(view.settings.power_level),
        "has_override": bool(my_row and my_row.power_level),
        "my_external_id": end_user.external_id if end_user else None,
    }
    return render(request, "routing/power_level.html", context, status=status)


def _label(level: str) -> str:
    return PowerLevel(level).label if level in PowerLevel.values else level


def _save(form, **target: Any) -> bool:
    """Save the form's values through the service; put the service's objections on the form."""
    try:
        set_llm_settings(**target, **form.settings_fields())
    except ValidationError as exc:
        errors = exc.error_dict if hasattr(exc, "error_dict") else {None: exc.error_list}
        for field, field_errors in errors.items():
            form.add_error(field if field in form.fields else None, field_errors)
        return False
    return True


@tenant_page(USERS)
def power_level(request):
    """What each power level does for this tenant now; the tenant default; my override."""
    return _settings_page(request, end_user=_my_end_user(request))


@tenant_page(MANAGERS)
@require_POST
def save_tenant_settings(request):
    form = TenantSettingsForm(request.POST, tenant=request.tenant)
    if form.is_valid() and _save(form, tenant=request.tenant, actor=request.user):
        messages.success(request, "Tenant defaults saved; the next request uses them.")
        return redirect("routing:settings")
    return _settings_page(request, end_user=_my_end_user(request), tenant_form=form, status=400)


@tenant_page(USERS)
@require_POST
def save_my_settings(request):
    form = MySettingsForm(request.POST, tenant=request.tenant)
    if form.is_valid():
        end_user = end_user_for_login(tenant=request.tenant, user=request.user)
        if _save(form, tenant=request.tenant, end_user=end_user, actor=request.user):
            messages.success(request, "Your settings saved; your next request uses them.")
            return redirect("routing:settings")
    return _settings_page(request, end_user=_my_end_user(request), my_form=form, status=400)


@never_cache
@tenant_page(USERS)
def playground(request):
    """A prompt box that calls the gateway from the browser with a one-hour token: the same
    routing, limits and usage records as any request, made as this member's end user."""
    tenant = request.tenant
    end_user = end_user_for_login(tenant=tenant, user=request.user)
    view = selectors.power_level_view(tenant=tenant, end_user=end_user)
    context = {
        "token": selectors.playground_token(tenant=tenant, end_user=end_user),
        "expires_at": timezone.now()
        + timedelta(seconds=selectors.PLAYGROUND_TOKEN_MAX_AGE_SECONDS),
        "end_user": end_user,
        "view": view,
        "my_level_label": _label(view.settings.power_level),
    }
    return render(request, "routing/playground.html", context)
