"""Account pages: home, tenant switcher. Login, logout and password reset are Django's."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from tenants.api.tenancy import SESSION_TENANT_KEY
from tenants.context_processors import navigation
from tenants.rbac import tenant_page
from tenants.selectors import memberships_of


@tenant_page()
def home(request):
    """The usage dashboard when it exists, else the first section the role may see."""
    sections = navigation(request, request.membership.role)
    return redirect(sections[0]["url"]) if sections else render(request, "tenants/home.html")


@login_required
@require_POST
def switch_tenant(request):
    membership = (
        memberships_of(user=request.user).filter(tenant_id=request.POST.get("tenant")).first()
    )
    if membership is None:
        messages.error(request, "You are not a member of that tenant.")
    else:
        request.session[SESSION_TENANT_KEY] = membership.tenant_id
        messages.success(request, f"Now working in {membership.tenant.name}.")
    target = request.POST.get("next") or reverse("home")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = reverse("home")
    return redirect(target)
