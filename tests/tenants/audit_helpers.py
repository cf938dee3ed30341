"""Test helpers for the audit log: clients that come from a known address and browser, and one
assertion for "this action was recorded, by whom, for which tenant, from where"."""

from __future__ import annotations

from typing import Any

from django.test import Client
from rest_framework.test import APIClient

from tenants.models import AuditLog
from tests.factories import MembershipFactory, TenantAPIKeyFactory

# Documentation addresses (RFC 5737): never the test client's default 127.0.0.1.
CLIENT_IP = "203.0.113.7"
USER_AGENT = "AuditTest/1.0 (inventory)"
ORIGIN = {"REMOTE_ADDR": CLIENT_IP, "HTTP_USER_AGENT": USER_AGENT}


def browser(user=None) -> Client:
    """A page client from CLIENT_IP, signed in as `user` when given."""
    client = Client(**ORIGIN)
    if user is not None:
        client.force_login(user)
    return client


def member_browser(tenant, role: str) -> tuple[Client, Any]:
    user = MembershipFactory(tenant=tenant, role=role).user
    return browser(user), user


def api_session(user) -> APIClient:
    client = APIClient(**ORIGIN)
    client.force_login(user)
    return client


def api_key_client(tenant, scopes=("manage",)) -> tuple[APIClient, Any]:
    key = TenantAPIKeyFactory(tenant=tenant, scopes=list(scopes))
    client = APIClient(**ORIGIN)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key.raw_key}")
    return client, key


def recorded(
    action: str,
    *,
    tenant,
    actor=None,
    actor_label: str | None = None,
    ip: str | None = CLIENT_IP,
) -> AuditLog:
    """The newest `action` entry, checked for who (a linked user, or a label), which tenant
    and where from (ip None: not from a request); returned for checks of target and changes."""
    entry = AuditLog.objects.filter(action=action).order_by("-pk").first()
    assert entry is not None, (
        f"no {action!r} entry; recorded: {list(AuditLog.objects.values_list('action', flat=True))}"
    )
    assert entry.tenant_id == (tenant.pk if tenant is not None else None), entry.tenant_id
    if actor is not None:
        assert entry.actor_id == actor.pk, (entry.actor_id, entry.actor_label)
        assert entry.actor_label == actor.get_username()
    if actor_label is not None:
        assert entry.actor_label == actor_label
    assert entry.ip_address == ip, entry.ip_address
    # A request's entries carry its browser; a task's, a command's, the router's carry none.
    assert entry.user_agent == (USER_AGENT if ip == CLIENT_IP else ""), entry.user_agent
    return entry
