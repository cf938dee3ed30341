"""The address a request came from, believing X-Forwarded-For only from trusted proxies.

A client can send any X-Forwarded-For it likes, so the header is read right to left and only
the hops added by a proxy in SWITCHYARD_TRUSTED_PROXIES count: the first address that is not
a trusted proxy is the client. With no trusted proxies (the default) the header is ignored
and the client is the connection's peer. The audit log and auth-failure throttling both key
on this, so an attacker must not be able to pick their own address.

The Django side calls `client_address(request)`; the gateway (raw ASGI scope, settings copied
once) calls `parse_trusted_proxies` at start-up and `resolve_client_address` per request.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from django.conf import settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# A header longer than this is not from a sane proxy chain; its excess hops are not read.
MAX_FORWARDED_HOPS = 20


def parse_trusted_proxies(values: Iterable[str]) -> tuple[Network, ...]:
    """Networks from addresses or CIDRs ("10.0.0.0/8", "::1"); ValueError names a bad one."""
    networks = []
    for value in values:
        value = value.strip()
        if not value:
            continue
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError as exc:
            raise ValueError(f"Not an IP address or network: {value!r}.") from exc
    return tuple(networks)


@lru_cache(maxsize=4)
def _configured(values: tuple[str, ...]) -> tuple[Network, ...]:
    return parse_trusted_proxies(values)


def trusted_proxies() -> tuple[Network, ...]:
    """SWITCHYARD_TRUSTED_PROXIES, parsed (cached per value, so tests may override it)."""
    return _configured(tuple(getattr(settings, "SWITCHYARD_TRUSTED_PROXIES", ()) or ()))


def _parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address from a hop as proxies write them: bare, "v4:port", "[v6]:port"."""
    value = value.strip().strip('"')
    if value.startswith("["):  # [v6] or [v6]:port
        value = value[1 : value.find("]")] if "]" in value else ""
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address, trusted) -> bool:
    return any(address.version == net.version and address in net for net in trusted)


def resolve_client_address(
    remote: str | None, forwarded_for: str | None, trusted: Sequence[Network]
) -> str | None:
    """The client's address: `remote` unless it is a trusted proxy, then the right-most hop of
    `forwarded_for` that is not. A malformed hop ends the walk at the last trusted one (what
    lies beyond it cannot be believed)."""
    peer = _parse_ip(remote or "")
    if peer is None:
        return None
    if not trusted or not forwarded_for or not _is_trusted(peer, trusted):
        return str(peer)
    client = peer
    hops = [hop for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops[-MAX_FORWARDED_HOPS:]):
        address = _parse_ip(hop)
        if address is None:
            break
        client = address
        if not _is_trusted(address, trusted):
            break
    return str(client)


def client_address(request: Any) -> str | None:
    """The client address of a Django (or DRF) request, under the trusted-proxy rule."""
    meta = request.META
    return resolve_client_address(
        meta.get("REMOTE_ADDR"), meta.get("HTTP_X_FORWARDED_FOR"), trusted_proxies()
    )


__all__ = [
    "client_address",
    "parse_trusted_proxies",
    "resolve_client_address",
    "trusted_proxies",
]
