"""Template context for tenant pages: the active tenant, the role, the switcher's choices."""

from __future__ import annotations

from django.urls import NoReverseMatch, reverse

from tenants.rbac import EVERYONE, MANAGERS, USERS
from tenants.selectors import memberships_of

# (label, url name, roles that see it). Sections whose page does not exist are skipped.
NAVIGATION = [
    ("Usage", "usage:dashboard", EVERYONE),
    ("Playground", "routing:playground", USERS),
    ("Provider keys", "providers:key-list", USERS),
    ("Power level", "routing:settings", USERS),
    ("Spending", "usage:spending", EVERYONE),
    ("API keys", "tenants:api-key-list", MANAGERS),
    ("Members", "tenants:member-list", MANAGERS),
    ("Audit log", "tenants:audit-log", MANAGERS),
]


def navigation(request, role: str) -> list[dict]:
    items = []
    for label, name, roles in NAVIGATION:
        if role not in roles:
            continue
        try:
            url = reverse(name)
        except NoReverseMatch:
            continue
        items.append({"label": label, "url": url, "active": request.path.startswith(url)})
    return items


def tenancy(request) -> dict:
    membership = getattr(request, "membership", None)
    if membership is None:
        return {}
    return {
        "navigation": navigation(request, membership.role),
        "active_tenant": request.tenant,
        "active_membership": membership,
        "can_manage": membership.role in MANAGERS,
        "can_use": membership.role in USERS,
        "my_memberships": memberships_of(user=request.user),
    }
