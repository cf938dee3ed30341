"""Which tenant a logged-in user is acting in: the session's choice, checked against Membership."""

from __future__ import annotations

from typing import Any

from tenants.models import Membership, Tenant
from tenants.selectors import memberships_of

SESSION_TENANT_KEY = "tenant_id"


def resolve_session_tenant(request: Any) -> tuple[Tenant | None, Membership | None]:
    """The session user's active tenant and membership, or (None, None) if they have none.

    The tenant id stored in the session counts only while the user is still a member of that
    (active) tenant; otherwise the user's first membership is used and remembered. Call after
    authentication; an API-key caller or anonymous user has no session tenant.
    """
    user = request.user
    if not getattr(user, "is_authenticated", False) or getattr(user, "pk", None) is None:
        return None, None
    session = request.session
    memberships = memberships_of(user=user)
    membership = None
    try:
        stored = int(session.get(SESSION_TENANT_KEY))
    except (TypeError, ValueError):
        stored = None
    if stored is not None:
        membership = memberships.filter(tenant_id=stored).first()
    if membership is None:
        membership = memberships.order_by("created_at", "pk").first()
        if membership is None:
            session.pop(SESSION_TENANT_KEY, None)
            return None, None
        session[SESSION_TENANT_KEY] = membership.tenant_id
    return membership.tenant, membership
