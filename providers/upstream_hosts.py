"""Which upstream hosts staff trust, and the SSRF guard applied to providers' base URLs.

The guard itself (config.netguard) refuses plain http and non-public addresses. Platform
providers on a host staff allow-listed (SWITCHYARD_UPSTREAM_ALLOWED_HOSTS, or an
UpstreamHostAllowance row in the admin) skip it: that is how the bundled simulator on
127.0.0.1 or an in-house model server is reached. A tenant's own endpoint never skips it,
and may not name an allow-listed host at all: trust given to a host for platform providers
is not handed to whoever types its name.
"""

from __future__ import annotations

from typing import Any

import httpx
from django.conf import settings
from django.core.exceptions import ValidationError

from config import netguard
from providers.models import UpstreamHostAllowance


def allowed_hosts() -> frozenset[str]:
    """The allow-list: the setting's hosts and the admin's, normalized (one query)."""
    rows = UpstreamHostAllowance.objects.values_list("host", flat=True)
    return netguard.parse_hosts([*settings.SWITCHYARD_UPSTREAM_ALLOWED_HOSTS, *rows])


def is_allowed(host: str) -> bool:
    """`host` (normalized) is on the allow-list; the setting is looked at first, no query."""
    if host in netguard.parse_hosts(settings.SWITCHYARD_UPSTREAM_ALLOWED_HOSTS):
        return True
    return UpstreamHostAllowance.objects.filter(host=host).exists()


def trusted_hosts(*, tenant_endpoint: bool) -> frozenset[str]:
    """The hosts a provider's connections skip the guard for: none for a tenant's endpoint."""
    return frozenset() if tenant_endpoint else allowed_hosts()


def base_url_problem(
    url: str, *, tenant_endpoint: bool, resolve: netguard.Resolve = netguard.system_resolve
) -> str:
    """Why `url` may not be a provider's base URL ("" if it may), in words staff can act on."""
    host = netguard.host_of(url)
    allowed = bool(host) and is_allowed(host)
    if tenant_endpoint and allowed:
        return (
            f"{host} is allow-listed for platform providers only; a tenant's own endpoint "
            "may not use it."
        )
    problem = netguard.url_refusal(
        url, trusted_hosts=frozenset({host}) if allowed else frozenset(), resolve=resolve
    )
    if problem and not tenant_endpoint and host:
        problem += " Staff can allow-list the host under “Upstream host allowances” in the admin."
    return problem


def check_base_url(url: str, *, tenant_endpoint: bool) -> None:
    """ValidationError on `base_url` when the guard would refuse `url`."""
    problem = base_url_problem(url, tenant_endpoint=tenant_endpoint)
    if problem:
        raise ValidationError({"base_url": problem})


def http_client(*, base_url: str, tenant_endpoint: bool, **kwargs: Any) -> httpx.Client:
    """An httpx client for calling the provider at `base_url`, guarded as the gateway's
    connections are: past the guard only for a platform provider on an allow-listed host."""
    host = netguard.host_of(base_url)
    trusted = not tenant_endpoint and bool(host) and is_allowed(host)
    return netguard.guarded_client(
        trusted_hosts=frozenset({host}) if trusted else frozenset(), **kwargs
    )
