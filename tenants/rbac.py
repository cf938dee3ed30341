"""Who may see a tenant page: the session's active tenant and the member's role.

Pages use `tenant_page(...)`; the management API uses tenants/api/permissions.py. Both
resolve the tenant the same way (tenants/api/tenancy.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.shortcuts import render

from tenants.api.tenancy import resolve_session_tenant
from tenants.choices import Role

MANAGERS = (Role.OWNER, Role.ADMIN)
USERS = (Role.OWNER, Role.ADMIN, Role.MEMBER)
EVERYONE = (Role.OWNER, Role.ADMIN, Role.MEMBER, Role.VIEWER)


def tenant_page(roles: Iterable[str] = EVERYONE) -> Callable:
    """Require a login, an active tenant membership and one of `roles` (403 otherwise).

    Sets `request.tenant` and `request.membership` for the view and its templates.
    """
    allowed = frozenset(roles)

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            tenant, membership = resolve_session_tenant(request)
            if tenant is None:
                return render(request, "tenants/no_tenant.html", status=403)
            request.tenant, request.membership = tenant, membership
            if membership.role not in allowed:
                raise PermissionDenied("Your role in this tenant does not allow this page.")
            return view(request, *args, **kwargs)

        wrapper.allowed_roles = allowed
        return wrapper

    return decorator
