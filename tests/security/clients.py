"""Callers for the hostile-input suite: signed-in members, API keys, raw HTTP, and a
fingerprint of what is stored, to show that a refused request wrote nothing."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from urllib.parse import urlparse

from django.apps import apps
from rest_framework.test import APIClient

from tests.factories import MembershipFactory, TenantAPIKeyFactory

ALL_SCOPES = ("completions", "embeddings", "models", "usage:read", "manage")
# The tables a management-API or page write would touch; sessions and the like are not
# business data.
WRITABLE = (
    "providers.ProviderKey",
    "providers.Provider",
    "tenants.TenantAPIKey",
    "tenants.Membership",
    "tenants.Invitation",
    "tenants.EndUser",
    "tenants.AuditLog",
    "tenants.Tenant",
    "routing.LLMSettings",
    "usage.SpendingCap",
    "usage.Alert",
    "usage.UsageRecord",
)


def signed_in(tenant, role: str) -> APIClient:
    user = MembershipFactory(tenant=tenant, role=role).user
    client = APIClient()
    client.force_login(user)
    client.user = user
    return client


def with_key(tenant, scopes: Sequence[str] = ALL_SCOPES, end_user=None) -> APIClient:
    key = TenantAPIKeyFactory(tenant=tenant, scopes=list(scopes), end_user=end_user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key.raw_key}")
    client.api_key = key
    return client


def stored() -> dict[str, list[tuple]]:
    """Every row of the business tables, as tuples of their concrete field values."""
    snapshot = {}
    for label in WRITABLE:
        model = apps.get_model(label)
        fields = [f.attname for f in model._meta.concrete_fields]
        snapshot[label] = sorted(
            map(repr, model._default_manager.order_by("pk").values_list(*fields))
        )
    return snapshot


def raw_http(url: str, request_head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send bytes no HTTP client library would (NUL, raw UTF-8 in headers); (status, body)."""
    parsed = urlparse(url)
    with socket.create_connection((parsed.hostname, parsed.port), timeout=10) as sock:
        sock.sendall(request_head + b"\r\n" + body)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    response = b"".join(chunks)
    head, _, payload = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), payload
