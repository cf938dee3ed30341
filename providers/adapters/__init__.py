"""Wire-protocol adapters and the one pooled HTTP session they share.

Adapters hold no state (per-key header caches aside), so each protocol has one module-level
instance; `adapter_for` is a dict lookup on the hot path.
"""

from __future__ import annotations

from collections.abc import Iterable

import aiohttp
import orjson
from django.conf import settings

from config import netguard
from providers.adapters.anthropic import AnthropicAdapter
from providers.adapters.base import Adapter
from providers.adapters.openai_compatible import OpenAICompatibleAdapter
from providers.choices import WireProtocol

# DNS answers are cached for this long: providers sit behind stable hostnames, and a lookup
# per new connection costs a round trip at exactly the moment a burst needs connections.
DNS_CACHE_SECONDS = 300
# Idle upstream connections are kept this long. Providers' load balancers close idle
# connections after 60 s or more; closing first avoids writing into a dead socket.
KEEPALIVE_SECONDS = 30.0

_ADAPTERS: dict[str, Adapter] = {
    WireProtocol.OPENAI: OpenAICompatibleAdapter(),
    WireProtocol.ANTHROPIC: AnthropicAdapter(),
}


def adapter_for(protocol: str) -> Adapter:
    """The adapter for a `WireProtocol` value; LookupError for one not implemented (Gemini)."""
    try:
        return _ADAPTERS[protocol]
    except KeyError:
        raise LookupError(f"no adapter for wire protocol {protocol!r}") from None


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()


def new_session(
    *, connect_timeout: float, limit: int = 0, trusted_hosts: Iterable[str] | None = None
) -> aiohttp.ClientSession:
    """THE upstream session of a process; create it once, at start-up, inside the loop.

    `limit` caps open connections (0: no cap; concurrency is bounded by the rate limits, and
    a pool cap would queue requests invisibly instead). `connect_timeout` applies to calls made
    without their own timeout; the adapters' callers pass a full ClientTimeout per attempt.

    Every new connection passes the SSRF guard (config.netguard) unless its host is in
    `trusted_hosts` (default: SWITCHYARD_UPSTREAM_ALLOWED_HOSTS; the gateway replaces them
    with the full allow-list per config version, see `trust_hosts`). One pool, guarded per
    host, rather than a plain and a guarded session: the check runs once per new connection,
    so a reused one costs nothing, and whichever provider reuses a connection, the host it
    goes to had the same verdict when it was opened.
    """
    if trusted_hosts is None:
        trusted_hosts = settings.SWITCHYARD_UPSTREAM_ALLOWED_HOSTS
    connector = netguard.GuardedConnector(
        trusted_hosts=netguard.parse_hosts(trusted_hosts),
        limit=limit,
        limit_per_host=0,
        ttl_dns_cache=DNS_CACHE_SECONDS,
        keepalive_timeout=KEEPALIVE_SECONDS,
    )
    return aiohttp.ClientSession(
        connector=connector,
        # Upstream cookies (load-balancer affinity, Cloudflare) must not leak between tenants.
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout),
        auto_decompress=True,
        # The adapters' cached header sets carry our User-Agent; aiohttp's own would name its
        # version to every provider.
        skip_auto_headers=("User-Agent",),
        json_serialize=_dumps,
        raise_for_status=False,
    )


def trusted_hosts(session: aiohttp.ClientSession) -> frozenset[str]:
    """The hosts `session`'s connections skip the SSRF guard for."""
    return session.connector.trusted_hosts  # type: ignore[union-attr]


def trust_hosts(session: aiohttp.ClientSession, hosts: frozenset[str]) -> None:
    """Let `session`'s new connections to `hosts` skip the guard. Taking a host off does not
    close connections already pooled to it: replace the session for that."""
    session.connector.trusted_hosts = hosts  # type: ignore[union-attr]


__all__ = ["Adapter", "adapter_for", "new_session", "trust_hosts", "trusted_hosts"]
