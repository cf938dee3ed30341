"""Who may call a management-API view: API keys by scope, session users by role."""

from __future__ import annotations

from functools import cache

from rest_framework.permissions import BasePermission

from tenants.choices import Role

# Every role may read; `manage`-type views narrow this down.
ALL_ROLES = (Role.OWNER, Role.ADMIN, Role.MEMBER, Role.VIEWER)
# Roles that see the whole tenant's data (a member sees only their own end user's).
TENANT_READERS = (Role.OWNER, Role.ADMIN, Role.VIEWER)
# Roles that change the tenant's configuration (keys, settings, caps, members).
MANAGER_ROLES = (Role.OWNER, Role.ADMIN)
# Roles with keys and settings of their own (viewers only look).
USER_ROLES = (Role.OWNER, Role.ADMIN, Role.MEMBER)


class HasTenant(BasePermission):
    """The caller resolved to an active tenant (an API key's, or the session's)."""

    message = "You are not a member of an active tenant."

    def has_permission(self, request, view) -> bool:
        tenant = getattr(request, "tenant", None)
        return tenant is not None and tenant.is_active


# Named like the class it returns: it is used as one, `permission_classes = [HasScope(...)]`.
@cache
def HasScope(scope: str) -> type[BasePermission]:
    """Permission class: an API-key caller needs `scope`; session users are judged by role."""

    class _HasScope(BasePermission):
        message = f"This API key lacks the '{scope}' scope."

        def has_permission(self, request, view) -> bool:
            key = getattr(request, "api_key", None)
            return key is None or key.has_scope(scope)

    _HasScope.__name__ = _HasScope.__qualname__ = f"HasScope_{scope}"
    return _HasScope


class SeesWholeTenant(BasePermission):
    """Not acting for one end user: no end-user-bound key, no `member` session."""

    message = "This caller acts for one end user and cannot see the whole tenant's data."

    def has_permission(self, request, view) -> bool:
        key = getattr(request, "api_key", None)
        if key is not None:
            return key.end_user_id is None
        membership = getattr(request, "membership", None)
        return membership is not None and membership.role in TENANT_READERS


@cache
def HasRole(*roles: str) -> type[BasePermission]:
    """Permission class: a session user needs one of `roles`; API keys are judged by scope."""

    class _HasRole(BasePermission):
        message = "Your role in this tenant does not allow this."

        def has_permission(self, request, view) -> bool:
            if getattr(request, "api_key", None) is not None:
                return True
            membership = getattr(request, "membership", None)
            return membership is not None and membership.role in roles

    _HasRole.__name__ = _HasRole.__qualname__ = f"HasRole_{'_'.join(roles)}"
    return _HasRole


@cache
def HasAnyScope(*scopes: str) -> type[BasePermission]:
    """Permission class: an API-key caller needs one of `scopes` (e.g. a read scope or
    `manage`); session users are judged by role."""

    class _HasAnyScope(BasePermission):
        message = f"This API key lacks one of the scopes {', '.join(repr(s) for s in scopes)}."

        def has_permission(self, request, view) -> bool:
            key = getattr(request, "api_key", None)
            return key is None or any(key.has_scope(scope) for scope in scopes)

    _HasAnyScope.__name__ = _HasAnyScope.__qualname__ = f"HasAnyScope_{'_'.join(scopes)}"
    return _HasAnyScope


class IsStaffSession(BasePermission):
    """A logged-in staff user; an API key never is, whatever its scopes."""

    message = "Only Switchyard staff may use this, signed in (API keys never may)."

    def has_permission(self, request, view) -> bool:
        if getattr(request, "api_key", None) is not None or request.auth is not None:
            return False
        user = request.user
        return bool(user and user.is_authenticated and user.is_staff and user.is_active)
