"""The SSRF guard: a URL someone typed never gets a connection to an internal address.

The policy (config.netguard) is checked on each blocked range and IPv6 spelling; then each
enforcement point through its real path: the gateway's aiohttp connector (IP literals, DNS
rebinding, plain http, tenants' endpoints through the live gateway against the simulator),
the sync httpx side (key validation, catalog lists, webhooks), save-time validation (staff
API, admin) and the staff allow-list the gateway picks up by config version.
"""

from __future__ import annotations

import io
import logging
import socket

import aiohttp
import httpx
import pytest
from aiohttp.abc import AbstractResolver
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from config import netguard
from providers import upstream_hosts
from providers.adapters import new_session, transport
from providers.adapters.base import ErrorKind, UpstreamError
from providers.choices import KeyScope
from providers.models import Provider, UpstreamHostAllowance
from providers.validation import validate_key
from routing import catalog_sources
from routing.models import LLMSettings
from tenants.crypto import SealedSecret
from tests.factories import CatalogModelFactory, ProviderFactory, ProviderKeyFactory
from tests.world_fixtures import add_provider, platform_key
from usage import webhooks
from usage.choices import Outcome
from usage.models import Alert, UsageRecord

PUBLIC = "93.184.215.14"  # a global unicast address (example.com's); never connected to
TENANT_SECRET = "sk-tenant-endpoint-canary-0123456789"
TIMEOUT = aiohttp.ClientTimeout(total=5)


# --- the policy -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "shared (CGNAT)"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.170.2", "cloud metadata"),
        ("169.254.1.1", "link-local"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - an address to refuse, not to bind
        ("224.0.0.251", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("198.18.0.1", "benchmarking"),
        ("192.0.2.10", "documentation"),
    ],
)
def test_each_blocked_ipv4_range_is_refused(address, kind):
    assert netguard.address_kind(netguard.parse_address(address)) == kind


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("[::1]", "loopback"),
        ("fe80::1%eth0", "link-local"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("fd00:ec2::254", "cloud metadata"),
        ("ff02::1", "multicast"),
        ("fec0::1", "private"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:a9fe:a9fe", "cloud metadata"),  # 169.254.169.254, mapped, in hex
        ("64:ff9b::a9fe:a9fe", "cloud metadata"),  # NAT64
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("2002:a00:1::", "private"),  # 6to4 of 10.0.0.1
        ("::127.0.0.1", "reserved"),  # IPv4-compatible (deprecated)
        ("2001::1", "reserved"),  # Teredo
        ("100::1", "reserved"),
    ],
)
def test_ipv6_forms_of_internal_addresses_are_refused(address, kind):
    assert netguard.address_kind(netguard.parse_address(address)) == kind


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_public_addresses_pass(address):
    assert netguard.address_kind(netguard.parse_address(address)) == ""


def test_a_name_resolving_to_one_public_and_one_private_address_is_refused(caplog):
    caplog.set_level(logging.WARNING, logger="config.netguard")

    with pytest.raises(netguard.DestinationRefused) as refused:
        netguard.check_addresses("mixed.example", [PUBLIC, "10.0.0.7"])

    assert str(refused.value) == "mixed.example resolves to a non-public address (private)"
    (record,) = [r for r in caplog.records if r.getMessage() == "netguard.refused"]
    assert (record.host, record.address, record.kind) == ("mixed.example", "10.0.0.7", "private")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://api.example.com/v1", "Plain http to api.example.com is not allowed"),
        ("ftp://api.example.com/v1", "Only http(s) URLs"),
        ("https://user:pw@api.example.com/v1", "must not carry credentials"),
        ("https://localhost:8443/v1", "localhost is a local name"),
        ("https://app.localhost/v1", "app.localhost is a local name"),
        ("https://127.0.0.1/v1", "127.0.0.1 is a non-public address (loopback)"),
        ("https://[::ffff:169.254.169.254]/v1", "(cloud metadata)"),
        ("https://internal.example/v1", "internal.example resolves to a non-public address"),
    ],
)
def test_save_time_refusals_say_what_is_wrong(url, problem):
    answers = {"internal.example": ["192.168.0.20"], "api.example.com": [PUBLIC]}

    refusal = netguard.url_refusal(url, resolve=lambda host, port: answers[host])

    assert problem in refusal


def test_an_allow_listed_host_may_use_plain_http_and_a_private_address():
    url = "http://10.0.0.5:8000/v1"

    assert "Plain http" in netguard.url_refusal(url)
    assert netguard.url_refusal(url, trusted_hosts=frozenset({"10.0.0.5"})) == ""


# --- connect time: the gateway's aiohttp session ----------------------------------------------


class RebindingDNS(AbstractResolver):
    """An attacker's name server: a public address for the first lookup (when the URL is
    checked on saving), 127.0.0.1 for every lookup after it (when the gateway connects)."""

    def __init__(self) -> None:
        self.lookups = 0

    def answer(self) -> str:
        self.lookups += 1
        return PUBLIC if self.lookups == 1 else "127.0.0.1"

    def sync(self, host: str, port: int) -> list[str]:
        return [self.answer()]

    async def resolve(self, host, port=0, family=socket.AF_INET):
        address = self.answer()
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        pass


async def get(session: aiohttp.ClientSession, url: str) -> bytes:
    return await transport.request_bytes(
        session, "GET", url, {"authorization": f"Bearer {TENANT_SECRET}"}, None, TIMEOUT, ""
    )


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "[::ffff:127.0.0.1]", "localhost"])
async def test_an_ip_literal_or_local_name_is_refused_when_connecting(sim, host):
    async with new_session(connect_timeout=2, trusted_hosts=()) as session:
        with pytest.raises(UpstreamError) as failed:
            await get(session, f"https://{host}:{sim.port}/v1/models")

    assert failed.value.kind == ErrorKind.BLOCKED
    assert failed.value.message.startswith("address not allowed:")
    assert "non-public address (loopback)" in failed.value.message
    assert TENANT_SECRET not in failed.value.message
    assert sim.log == []


async def test_dns_rebinding_passes_on_saving_and_is_refused_on_connecting(sim):
    dns = RebindingDNS()
    url = f"https://rebind.attacker.example:{sim.port}/v1"

    assert netguard.url_refusal(url, resolve=dns.sync) == ""  # saved: it looked public
    connector = netguard.GuardedConnector(resolver=dns, use_dns_cache=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        with pytest.raises(UpstreamError) as failed:
            await get(session, f"{url}/models")

    assert failed.value.kind == ErrorKind.BLOCKED
    assert "rebind.attacker.example resolves to a non-public address" in failed.value.message
    assert dns.lookups == 2
    assert sim.log == []


async def test_plain_http_is_refused_to_a_host_not_allow_listed(sim):
    async with new_session(connect_timeout=2, trusted_hosts=()) as session:
        with pytest.raises(UpstreamError) as failed:
            await get(session, f"http://127.0.0.1:{sim.port}/v1/models")

    assert failed.value.kind == ErrorKind.BLOCKED
    assert "use https" in failed.value.message
    assert sim.log == []


async def test_an_allow_listed_host_is_reached_over_plain_http(sim):
    async with new_session(connect_timeout=2, trusted_hosts=["127.0.0.1"]) as session:
        body = await get(session, f"http://127.0.0.1:{sim.port}/v1/models")

    assert b'"data"' in body
    assert [entry["path"] for entry in sim.log] == ["/v1/models"]


# --- the live gateway -------------------------------------------------------------------------

MESSAGES = [{"role": "user", "content": "hello"}]


def post(world, model: str) -> httpx.Response:
    return httpx.post(
        f"{world.base_url}/chat/completions",
        headers=world.headers(),
        json={"model": model, "messages": MESSAGES},
        timeout=30,
    )


def tenant_endpoint(world, base_url: str) -> Provider:
    """A tenant's own endpoint serving 'own-model' twice (two upstream ids), saved as a row
    is after the fact (the name moved, or it predates the guard): no save-time check."""
    provider = ProviderFactory(slug="own", name="own", tenant=world.tenant, base_url=base_url)
    ProviderKeyFactory(
        provider=provider, tenant=world.tenant, scope=KeyScope.TENANT, secret=TENANT_SECRET
    )
    for model_id in ("sim-balanced", "sim-eco"):
        CatalogModelFactory(provider=provider, model_id=model_id, name="own-model")
    world.gateway.sync()
    return provider


def test_an_allow_listed_platform_provider_works_through_the_gateway(world):
    assert "127.0.0.1" in world.gateway.state.session.connector.trusted_hosts

    response = post(world, "sim-eco")

    assert response.status_code == 200, response.text
    assert [entry["path"] for entry in world.sim.log] == ["/v1/chat/completions"]


def test_a_tenant_endpoint_resolving_to_loopback_is_refused_with_nothing_a_success(world, caplog):
    caplog.set_level(logging.WARNING, logger="config.netguard")
    LLMSettings.objects.create(tenant=world.tenant, auto_failover=False)
    tenant_endpoint(world, f"https://localhost:{world.sim.port}/v1")

    response = post(world, "own-model")

    assert response.status_code == 502
    (attempt,) = response.json()["error"]["attempts"]
    assert attempt["error"] == (
        "address not allowed: localhost resolves to a non-public address (loopback)"
    )
    assert TENANT_SECRET not in response.text
    assert world.sim.log == []
    world.gateway.flush_usage()
    assert list(UsageRecord.objects.values_list("outcome", flat=True)) == [Outcome.CONNECT_ERROR]
    assert any(r.getMessage() == "netguard.refused" for r in caplog.records)


def test_a_blocked_endpoint_is_not_tried_again_and_the_request_falls_back(world):
    own = tenant_endpoint(world, f"https://[::ffff:127.0.0.1]:{world.sim.port}/v1")

    responses = [post(world, "own-model") for _ in range(4)]

    assert [r.status_code for r in responses] == [200] * 4
    assert {r.headers["x-switchyard-provider"] for r in responses} == {"sim-openai"}
    world.gateway.flush_usage()
    refused = UsageRecord.objects.filter(provider_id=own.pk)
    # Once per request, though the endpoint serves two of the candidates.
    assert refused.count() == 4
    assert set(refused.values_list("outcome", flat=True)) == {Outcome.CONNECT_ERROR}
    # Refused by policy, not down: the breaker is not fed, it is simply never connected to.
    assert own.pk not in world.gateway.state.health.cooling
    assert all(entry["api_key"] != TENANT_SECRET for entry in world.sim.log)


def test_a_tenant_endpoint_on_an_allow_listed_host_is_not_routed(world):
    # 127.0.0.1 is allow-listed for the platform's simulator providers in the test settings.
    provider = tenant_endpoint(world, f"http://127.0.0.1:{world.sim.port}/v1")

    response = post(world, "own-model")

    assert response.status_code == 404
    assert provider.pk not in world.gateway.state.snapshot.providers
    assert world.sim.log == []
    world.gateway.flush_usage()
    assert not UsageRecord.objects.filter(outcome=Outcome.SUCCESS).exists()


def test_a_redirect_is_not_followed(world):
    redirecting = add_provider(world.sim.url, "redirecting", path="/fault/redirect")
    platform_key(redirecting, "sim-platform-redirect-0004")
    CatalogModelFactory(provider=redirecting, model_id="sim-eco", name="bounced")
    LLMSettings.objects.create(tenant=world.tenant, auto_failover=False)
    world.gateway.sync()

    response = post(world, "bounced")

    assert response.status_code == 502
    (attempt,) = response.json()["error"]["attempts"]
    assert attempt["status"] == 302
    assert "redirect not followed" in attempt["error"]
    assert [entry["path"] for entry in world.sim.log] == ["/fault/redirect/v1/chat/completions"]


def test_staff_allow_list_changes_reach_the_gateway(world, staff_user, client):
    client.force_login(staff_user)
    add = reverse("admin:providers_upstreamhostallowance_add")
    state = world.gateway.state
    first_session = state.session

    response = client.post(add, {"host": "LLM.Internal.Example.", "note": "our vLLM"})

    assert response.status_code == 302, response.content.decode()[:2000]
    allowance = UpstreamHostAllowance.objects.get()
    assert allowance.host == "llm.internal.example"
    world.gateway.wait_for_config()
    assert "llm.internal.example" in state.session.connector.trusted_hosts
    assert state.session is first_session  # trusting more keeps the pool

    delete = reverse("admin:providers_upstreamhostallowance_delete", args=[allowance.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 302
    world.gateway.wait_for_config()

    # Connections pooled to the host skipped the guard: a new session replaces the pool.
    assert "llm.internal.example" not in state.session.connector.trusted_hosts
    assert state.session is not first_session
    assert post(world, "sim-eco").status_code == 200


# --- save time ---------------------------------------------------------------------------------


@pytest.fixture
def staff_api(staff_user) -> APIClient:
    api = APIClient()
    api.force_login(staff_user)
    return api


@pytest.mark.parametrize(
    ("base_url", "problem"),
    [
        ("https://127.0.0.1:8443/v1", "allow-listed for platform providers only"),
        ("https://10.0.0.8/v1", "10.0.0.8 is a non-public address (private)"),
        ("https://[fd00:ec2::254]/v1", "(cloud metadata)"),
        ("https://localhost/v1", "localhost is a local name"),
        ("http://api.example.org/v1", "Plain http to api.example.org is not allowed"),
    ],
)
def test_a_tenant_endpoint_moved_to_an_internal_url_is_a_400_and_nothing_is_saved(
    staff_api, other_tenant, base_url, problem
):
    custom = ProviderFactory(tenant=other_tenant, slug="custom", base_url="https://a.example/v1")

    response = staff_api.patch(
        f"/api/v1/staff/providers/{custom.pk}", {"base_url": base_url}, format="json"
    )

    assert response.status_code == 400
    assert problem in response.json()["detail"]
    custom.refresh_from_db()
    assert custom.base_url == "https://a.example/v1"


def test_a_platform_provider_needs_its_private_host_allow_listed(staff_api, db):
    platform = ProviderFactory(slug="vllm", base_url="https://a.example/v1")
    patch = f"/api/v1/staff/providers/{platform.pk}"

    refused = staff_api.patch(patch, {"base_url": "http://10.0.0.5:8000/v1"}, format="json")
    UpstreamHostAllowance.objects.create(host="10.0.0.5", note="in-house vLLM")
    accepted = staff_api.patch(patch, {"base_url": "http://10.0.0.5:8000/v1"}, format="json")

    assert refused.status_code == 400
    assert "Staff can allow-list the host" in refused.json()["detail"]
    assert accepted.status_code == 200, accepted.content
    platform.refresh_from_db()
    assert platform.base_url == "http://10.0.0.5:8000/v1"


def test_the_admin_refuses_a_tenant_endpoint_on_loopback(client, staff_user, tenant):
    client.force_login(staff_user)

    response = client.post(
        reverse("admin:providers_provider_add"),
        {
            "name": "Ours",
            "slug": "ours",
            "kind": "custom",
            "base_url": "http://127.0.0.1:9100/v1",
            "options": "{}",
            "tenant": tenant.pk,
            "is_enabled": "on",
        },
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["base_url"]
    assert "allow-listed for platform providers only" in errors[0]
    assert not Provider.objects.filter(slug="ours").exists()


@pytest.mark.parametrize("host", ["http://x.example", "x.example:8000", "*.example", "a/b"])
def test_the_allow_list_takes_bare_hosts_only(client, staff_user, host):
    client.force_login(staff_user)

    response = client.post(reverse("admin:providers_upstreamhostallowance_add"), {"host": host})

    assert response.status_code == 200
    assert "Enter only the host" in response.context["adminform"].form.errors["host"][0]
    assert not UpstreamHostAllowance.objects.exists()


# --- connect time: the sync side (key validation, catalog lists, webhooks) --------------------


def test_key_validation_of_a_tenant_endpoint_on_loopback_is_refused(sim):
    result = validate_key(
        protocol="openai",
        kind="custom",
        base_url=f"http://127.0.0.1:{sim.port}/v1",
        api_key=TENANT_SECRET,
        options={},
        model_id=None,
        tenant_endpoint=True,
    )

    assert not result.ok
    assert result.error.startswith("The base URL's address is not allowed: plain http")
    assert not result.transient
    assert sim.log == []


def test_key_validation_of_an_allow_listed_platform_provider_connects(sim):
    result = validate_key(
        protocol="openai",
        kind="simulator",
        base_url=f"http://127.0.0.1:{sim.port}/v1",
        api_key="sim-good-key-0042",
        options={},
        model_id=None,
    )

    assert result.ok, result.error
    assert len(sim.log) == 1


def test_httpx_rebinding_is_refused_on_connecting(sim):
    dns = RebindingDNS()
    dns.lookups = 1  # the saving lookup happened: the next answer is 127.0.0.1

    with (
        netguard.guarded_client(resolve=dns.sync) as client,
        pytest.raises(netguard.DestinationRefused) as refused,
    ):
        client.get(f"https://rebind.attacker.example:{sim.port}/v1/models")

    assert "rebind.attacker.example resolves to a non-public address" in str(refused.value)
    assert sim.log == []


def test_a_catalog_list_from_a_host_not_allow_listed_is_refused(sim):
    with pytest.raises(catalog_sources.FetchError) as failed:
        catalog_sources.http_fetch(
            f"https://127.0.0.1:{sim.port}/v1/models",
            headers={},
            timeout=5,
            max_bytes=1000,
            follow_redirects=False,
        )

    assert failed.value.message.startswith("address not allowed: 127.0.0.1 is a non-public")
    assert not failed.value.transient
    assert sim.log == []


@pytest.fixture
def alert(tenant):
    tenant.webhook_secret = "whsec-test-0123456789"
    tenant.save()
    tenant.refresh_from_db()
    assert isinstance(tenant.webhook_secret, SealedSecret)
    return Alert.objects.create(tenant=tenant, kind="cap", threshold=80, message="80 % of cap")


@pytest.mark.parametrize("allow_private", [False, True])
def test_a_webhook_to_a_name_resolving_to_loopback_is_refused_on_connecting(
    alert, sim, settings, monkeypatch, allow_private
):
    settings.SWITCHYARD_WEBHOOK_ALLOW_PRIVATE_HOSTS = allow_private
    alert.tenant.webhook_url = f"http://hooks.tenant.example:{sim.port}/hook"
    alert.tenant.save()
    real = socket.getaddrinfo

    def dns(host, *args, **kwargs):  # the tenant's name server, pointing inwards
        return real("127.0.0.1" if host == "hooks.tenant.example" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", dns)

    outcome = webhooks.deliver_alert_webhook(alert_id=alert.pk, now=timezone.now())

    alert.refresh_from_db()
    if allow_private:  # the switch for a trusted installation: the same URL gets through
        assert [entry["path"] for entry in sim.log] == ["/hook"]
        return
    assert outcome == "refused"
    assert sim.log == []
    assert alert.webhook_error == (
        "Refused: hooks.tenant.example resolves to a non-public address (loopback)."
    )
    assert alert.webhook_delivered_at is None


# --- the allow-list itself --------------------------------------------------------------------


def test_the_allow_list_joins_the_setting_and_the_admin_rows(db, settings):
    settings.SWITCHYARD_UPSTREAM_ALLOWED_HOSTS = ["127.0.0.1", "[::1]", "Sim.Local"]
    UpstreamHostAllowance.objects.create(host="10.0.0.5")

    assert upstream_hosts.allowed_hosts() == {"127.0.0.1", "::1", "sim.local", "10.0.0.5"}
    assert upstream_hosts.trusted_hosts(tenant_endpoint=True) == frozenset()


def test_seed_demo_allow_lists_only_the_simulator(db, settings):
    from django.core.management import call_command

    settings.SWITCHYARD_UPSTREAM_ALLOWED_HOSTS = []
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    call_command("seed_demo", "--json", stdout=io.StringIO())

    assert list(UpstreamHostAllowance.objects.values_list("host", flat=True)) == ["127.0.0.1"]
    assert Provider.objects.filter(base_url__startswith="http://127.0.0.1:").exists()
