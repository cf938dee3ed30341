"""The SSRF guard: which addresses an outbound connection to a URL someone typed may reach.

Base URLs of tenants' endpoints and alert webhooks are typed by people we do not fully
trust, and they are called from inside the installation's network. So a connection to such
a URL must reach neither the installation itself (loopback), nor its neighbours (private,
CGNAT, link-local), nor the cloud's metadata service (169.254.169.254, fd00:ec2::254), nor
multicast or reserved space, and must use TLS: the request carries a provider key.

The check runs when a connection is opened, on the very addresses it connects to, after
resolution: a name that resolved to a public address when the URL was saved and resolves to
127.0.0.1 now (DNS rebinding) is refused then. Hosts staff trust (`trusted_hosts`) skip the
check; they are how platform providers reach the bundled simulator or an in-house model
server. Redirects are never followed by the callers, so a trusted or public host cannot
bounce a request elsewhere either.

One policy, three enforcement points: `GuardedConnector` (aiohttp, the gateway),
`guarded_client` (httpx, the sync side) and `url_refusal` (save time, for a clear message
before anything is stored). It lives here, not in an app, because every app calls out:
providers (keys, health, catalog), usage (webhooks).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpcore
import httpx

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> the addresses it resolves to, in the resolver's order.
Resolve = Callable[[str, int], Sequence[str]]

# Checked in order, so the specific kind wins (metadata before link-local). The names end up
# in error messages: they tell staff why without a lookup.
_V4: tuple[tuple[ipaddress.IPv4Network, str], ...] = tuple(
    (ipaddress.IPv4Network(net), kind)
    for net, kind in (
        ("169.254.169.254/32", "cloud metadata"),  # AWS, GCP, Azure, OCI
        ("169.254.170.2/32", "cloud metadata"),  # ECS task metadata
        ("100.100.100.200/32", "cloud metadata"),  # Alibaba
        ("0.0.0.0/8", "unspecified"),  # "this network": 0.0.0.0 reaches the local host
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared (CGNAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "reserved"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "reserved"),  # deprecated 6to4 relays
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),  # and 255.255.255.255
    )
)
_V6: tuple[tuple[ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.IPv6Network(net), kind)
    for net, kind in (
        ("fd00:ec2::254/128", "cloud metadata"),  # AWS IMDS over IPv6
        ("::1/128", "loopback"),
        ("::/128", "unspecified"),
        ("64:ff9b:1::/48", "private"),  # local-use NAT64
        ("100::/64", "reserved"),  # discard-only
        ("2001::/32", "reserved"),  # Teredo: the IPv4 it tunnels to is hidden
        ("2001::/23", "reserved"),
        ("2001:db8::/32", "documentation"),
        ("fc00::/7", "private"),  # unique local
        ("fe80::/10", "link-local"),
        ("fec0::/10", "private"),  # site-local (deprecated)
        ("ff00::/8", "multicast"),
    )
)
# Global unicast: the only IPv6 space in use on the Internet; the rest is reserved.
_V6_GLOBAL = ipaddress.IPv6Network("2000::/3")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LOCAL_NAMES = ("localhost", "metadata.google.internal")


class DestinationRefused(OSError):
    """A connection the policy refuses. The message names the host and why, nothing else (no
    URL: a path or query could carry a secret)."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(reason)
        self.host = host
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


def parse_address(value: str) -> IPAddress | None:
    """`value` as an IP address (brackets and an IPv6 zone dropped); None if it is a name."""
    text = value.strip().strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def address_kind(address: IPAddress) -> str:
    """The kind of non-public address `address` is ("loopback", "private", ...); "" if public.

    IPv6 forms that carry an IPv4 address (mapped ::ffff:a.b.c.d, NAT64 64:ff9b::a.b.c.d, 6to4
    2002:aabb:ccdd::) are judged by that IPv4 address; IPv4-compatible ::a.b.c.d (deprecated)
    lies outside global unicast and is refused as reserved.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return address_kind(embedded)
        for network, kind in _V6:
            if address in network:
                return kind
        return "" if address in _V6_GLOBAL and address.is_global else "reserved"
    for network, kind in _V4:
        if address in network:
            return kind
    # Python's registry of special-purpose space, for what the table does not name.
    return "" if address.is_global else "reserved"


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def normalize_host(host: str) -> str:
    """A host as allow-lists and checks compare it: lower case, no brackets or final dot, an
    IP address in its canonical form (so "[::FFFF:7f00:1]" and "::ffff:127.0.0.1" match)."""
    text = host.strip().lower().rstrip(".")
    address = parse_address(text)
    return str(address) if address is not None else text.strip("[]")


def parse_hosts(values: Iterable[str]) -> frozenset[str]:
    """Allow-list entries as a set of normalized hosts (blank entries dropped)."""
    return frozenset(normalize_host(v) for v in values if v and v.strip())


def host_of(url: str) -> str:
    """The normalized host of `url` ("" when it has none or does not parse)."""
    try:
        return normalize_host(urlsplit(url).hostname or "")
    except ValueError:
        return ""


def system_resolve(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives for `host` (OSError when it gives none)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_addresses(host: str, addresses: Iterable[str]) -> None:
    """Raise DestinationRefused (and log it) unless every address `host` resolved to is public.

    Every, not any: a name that answers with one public and one private address would
    otherwise reach the private one whenever the public one is slow.
    """
    literal = parse_address(host) is not None
    for value in addresses:
        address = parse_address(value)
        kind = address_kind(address) if address is not None else "unparseable"
        if kind:
            reason = (
                f"{host} is a non-public address ({kind})"
                if literal
                else f"{host} resolves to a non-public address ({kind})"
            )
            # The address is for staff reading the log; the error (which may reach a
            # tenant) names only the host they typed.
            logger.warning("netguard.refused", extra={"host": host, "address": value, "kind": kind})
            raise DestinationRefused(host, reason)


def _refuse_plain_http(host: str) -> DestinationRefused:
    logger.warning("netguard.refused", extra={"host": host, "kind": "plain http"})
    return DestinationRefused(
        host, f"plain http to {host} is not allowed (the request carries a key): use https"
    )


def url_refusal(
    url: str,
    *,
    trusted_hosts: frozenset[str] = frozenset(),
    require_tls: bool = True,
    resolve: Resolve = system_resolve,
) -> str:
    """Why a connection to `url` would be refused ("" if it would not), for a save-time error.

    A name that does not resolve now passes: the connect-time check decides then, and a typo
    fails there with a connection error.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "The URL does not parse."
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return "Only http(s) URLs with a host are allowed."
    if parts.username or parts.password:
        return "The URL must not carry credentials (user:password@)."
    host = normalize_host(parts.hostname)
    if host in trusted_hosts:
        return ""
    if require_tls and scheme != "https":
        return f"Plain http to {host} is not allowed: use https."
    if host in _LOCAL_NAMES or host.endswith(".localhost"):
        return f"Not allowed: {host} is a local name."
    if parse_address(host) is not None:
        addresses: Sequence[str] = [host]
    else:
        try:
            addresses = resolve(host, port or (443 if scheme == "https" else 80))
        except OSError:
            return ""
    try:
        check_addresses(host, addresses)
    except DestinationRefused as exc:
        return f"Not allowed: {exc.reason}."
    return ""


# --- aiohttp (the gateway) ---------------------------------------------------------------------


class GuardedConnector(aiohttp.TCPConnector):
    """A TCPConnector that checks each new connection to a host not in `trusted_hosts`: TLS
    required (`require_tls`) and every address it is about to connect to public.

    aiohttp resolves in `_resolve_host`, which also hands back IP-literal hosts unresolved
    (they skip the resolver), and connects to exactly the addresses it returns; checking its
    result covers names, literals and the DNS cache alike. Pooled connections were checked
    when opened. `trusted_hosts` may be replaced at any time (the gateway does, per config).
    """

    def __init__(
        self,
        *,
        trusted_hosts: frozenset[str] = frozenset(),
        require_tls: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.trusted_hosts = trusted_hosts
        self.require_tls = require_tls

    async def _create_connection(self, req, traces, client_timeout):  # type: ignore[no-untyped-def]
        if self.require_tls and not req.is_ssl():
            host = normalize_host(req.url.raw_host or "")
            if host not in self.trusted_hosts:
                raise _refuse_plain_http(host)
        return await super()._create_connection(req, traces, client_timeout)

    async def _resolve_host(self, host, port, traces=None):  # type: ignore[no-untyped-def]
        results = await super()._resolve_host(host, port, traces=traces)
        name = normalize_host(host)
        if name not in self.trusted_hosts:
            check_addresses(name, [r["host"] for r in results])
        return results


# --- httpx (admin actions, pages, tasks) -------------------------------------------------------


class _GuardedBackend(httpcore.SyncBackend):
    """Resolves, checks every address, then connects to a checked one: the name is never
    resolved a second time between the check and the connection."""

    def __init__(self, trusted_hosts: frozenset[str], resolve: Resolve) -> None:
        self.trusted_hosts = trusted_hosts
        self.resolve = resolve

    def connect_tcp(  # type: ignore[no-untyped-def]
        self, host, port, timeout=None, local_address=None, socket_options=None
    ):
        name = normalize_host(host)
        if name in self.trusted_hosts:
            return super().connect_tcp(host, port, timeout, local_address, socket_options)
        if parse_address(name) is not None:
            addresses: Sequence[str] = [name]
        else:
            try:
                addresses = self.resolve(host, port)
            except OSError as exc:  # what httpcore raises for a failed lookup
                raise httpcore.ConnectError(str(exc)) from exc
        check_addresses(name, addresses)
        error: Exception = httpcore.ConnectError(f"{name}: no address")
        for address in addresses:
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc  # the next address, as socket.create_connection would
        raise error


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport with the guard on every connection it opens."""

    def __init__(
        self,
        *,
        trusted_hosts: frozenset[str] = frozenset(),
        require_tls: bool = True,
        resolve: Resolve = system_resolve,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.trusted_hosts = trusted_hosts
        self.require_tls = require_tls
        # httpx takes no network backend argument; its pool does. Tests prove it is used.
        self._pool._network_backend = _GuardedBackend(trusted_hosts, resolve)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.require_tls and request.url.scheme != "https":
            host = normalize_host(request.url.host)
            if host not in self.trusted_hosts:
                raise _refuse_plain_http(host)
        return super().handle_request(request)


def guarded_client(
    *,
    trusted_hosts: frozenset[str] = frozenset(),
    require_tls: bool = True,
    resolve: Resolve = system_resolve,
    **kwargs: Any,
) -> httpx.Client:
    """An httpx.Client whose every connection passes the guard. Proxies from the environment
    are ignored: they would connect for us, past the check."""
    transport = GuardedTransport(
        trusted_hosts=trusted_hosts, require_tls=require_tls, resolve=resolve
    )
    return httpx.Client(transport=transport, trust_env=False, **kwargs)
