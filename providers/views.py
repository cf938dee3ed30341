"""The provider keys page (BYOK): the tenant's keys and the signed-in user's own keys.

Owners and admins manage the tenant's keys and their own; members manage only their own and
see the tenant's. A key is checked with a small live request before it is saved or replaced:
a key the provider refuses is never stored. Secrets are never rendered, not even masked
beyond their last four characters.
"""

from __future__ import annotations

import logging

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from providers import selectors, services, validation
from providers.choices import KeyScope
from providers.models import Provider, ProviderKey
from providers.page_forms import SCOPE_TENANT, AddProviderKeyForm, ReplaceSecretForm
from tenants.models import EndUser
from tenants.rbac import USERS, tenant_page
from tenants.services import end_user_for_login

logger = logging.getLogger(__name__)

# The page waits for the check; past this the provider is "not answering", try again later.
KEY_CHECK_TIMEOUT_SECONDS = 10


def live_check(provider: Provider, secret: str) -> validation.ValidationResult:
    """The check a key passes before it is saved (shared with the management API)."""
    return validation.check_key(provider, secret, timeout=KEY_CHECK_TIMEOUT_SECONDS)


def _profile(request: HttpRequest) -> EndUser:
    return end_user_for_login(tenant=request.tenant, user=request.user)


def _key_for(request: HttpRequest, key_id: int) -> ProviderKey:
    """A key this user may change; another tenant's key, or another user's own key, is a 404."""
    try:
        key = selectors.get_provider_key(tenant=request.tenant, key_id=key_id)
    except ProviderKey.DoesNotExist:
        raise Http404("No such key.") from None
    if key.scope == KeyScope.USER:
        if key.end_user is None or key.end_user.user_id != request.user.pk:
            raise Http404("No such key.")
    elif not request.membership.can_manage:
        raise PermissionDenied("Only owners and admins manage the tenant's keys.")
    return key


def _list_context(request: HttpRequest, *, form: AddProviderKeyForm | None = None) -> dict:
    keys = list(selectors.provider_keys(tenant=request.tenant, end_user=_profile(request)))
    can_manage = request.membership.can_manage
    if form is None:
        form = AddProviderKeyForm(tenant=request.tenant, can_manage=can_manage)
    return {
        "tenant_keys": [k for k in keys if k.scope == KeyScope.TENANT],
        "own_keys": [k for k in keys if k.scope == KeyScope.USER],
        "form": form,
    }


@tenant_page(USERS)
@require_GET
def key_list(request: HttpRequest) -> HttpResponse:
    return render(request, "providers/key_list.html", _list_context(request))


@tenant_page(USERS)
@require_POST
def key_add(request: HttpRequest) -> HttpResponse:
    """Check the key live; store it only if the provider accepts it."""
    can_manage = request.membership.can_manage
    form = AddProviderKeyForm(request.POST, tenant=request.tenant, can_manage=can_manage)
    if form.is_valid():
        provider = form.cleaned_data["provider"]
        secret = form.cleaned_data["secret"]
        is_mine = form.cleaned_data["scope"] != SCOPE_TENANT
        result = live_check(provider, secret)
        if result.ok:
            key = services.add_checked_provider_key(
                provider=provider,
                secret=secret,
                tenant=request.tenant,
                actor=request.user,
                end_user=_profile(request) if is_mine else None,
                label=form.cleaned_data["label"],
            )
            whose = "your own" if is_mine else "a tenant"
            messages.success(
                request, f"The {provider.name} key {key.masked} works and is saved as {whose} key."
            )
            if result.error:  # accepted, with a note (e.g. the test model was refused)
                messages.warning(request, result.error)
            if request.headers.get("HX-Request"):
                # The lists and the message are on the whole page: htmx loads it afresh.
                return HttpResponse(
                    status=204, headers={"HX-Redirect": reverse("providers:key-list")}
                )
            return redirect("providers:key-list")
        logger.info(
            "provider_key.page_check_failed",
            extra={
                "tenant_id": request.tenant.pk,
                "provider": provider.slug,
                "status": result.status,
            },
        )
        services.record_refused_key_check(
            tenant=request.tenant,
            provider=provider,
            error=result.error,
            status=result.status,
            actor=request.user,
        )
        form.add_error(None, f"{result.error} Nothing was saved.")
        if not request.headers.get("HX-Request"):
            # Without htmx the whole page comes back, scrolled to its top: say it there too.
            messages.error(request, f"The key was not saved: {result.error}")
    return render(request, "providers/key_list.html", _list_context(request, form=form))


@tenant_page(USERS)
@require_POST
def key_set_enabled(request: HttpRequest, key_id: int) -> HttpResponse:
    """Enable or disable a key; an htmx request gets the key's row back."""
    key = _key_for(request, key_id)
    enabled = request.POST.get("enabled") == "1"
    services.set_provider_key_enabled(key=key, enabled=enabled, actor=request.user)
    if request.headers.get("HX-Request"):
        return render(request, "providers/_key_row.html", {"key": key, "editable": True})
    state = "enabled: routing may use it" if enabled else "disabled: routing skips it"
    messages.success(request, f"The {key.provider.name} key {key.masked} is {state}.")
    return redirect("providers:key-list")


@tenant_page(USERS)
@require_http_methods(["GET", "POST"])
def key_replace(request: HttpRequest, key_id: int) -> HttpResponse:
    """A new secret for a key, checked live first; a refused secret changes nothing."""
    key = _key_for(request, key_id)
    form = ReplaceSecretForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        secret = form.cleaned_data["secret"]
        result = live_check(key.provider, secret)
        if result.ok:
            services.replace_checked_provider_key_secret(key=key, secret=secret, actor=request.user)
            messages.success(
                request, f"The {key.provider.name} key is replaced: {key.masked} works."
            )
            if result.error:
                messages.warning(request, result.error)
            return redirect("providers:key-list")
        services.record_refused_key_check(
            tenant=request.tenant,
            provider=key.provider,
            error=result.error,
            status=result.status,
            actor=request.user,
            key=key,
        )
        form.add_error(None, f"{result.error} The stored key is unchanged.")
    return render(request, "providers/key_replace.html", {"key": key, "form": form})


@tenant_page(USERS)
@require_http_methods(["GET", "POST"])
def key_delete(request: HttpRequest, key_id: int) -> HttpResponse:
    """GET asks for confirmation; only the POST deletes."""
    key = _key_for(request, key_id)
    if request.method == "POST":
        masked, provider = key.masked, key.provider.name
        services.delete_provider_key(key=key, actor=request.user)
        messages.success(request, f"The {provider} key {masked} is deleted.")
        return redirect("providers:key-list")
    return render(request, "providers/key_confirm_delete.html", {"key": key})
