"""Hostile request bodies: wrong types, odd characters, values past what any column or
provider header can hold. Each is refused with a 400 naming the problem (or, where it is
harmless, served and stored exactly), and nothing is written, called or lost.

Size and nesting limits of the completion API are tests/security/test_input_limits.py's.
"""

from __future__ import annotations

import time
from decimal import Decimal

import httpx
import pytest
from django.urls import reverse

from providers.models import ProviderKey
from tenants.models import EndUser
from tests.factories import (
    CatalogModelFactory,
    MembershipFactory,
    ProviderFactory,
    TenantAPIKeyFactory,
)
from tests.security.clients import signed_in, stored, with_key
from tests.security.hostile_upstream import error_body, hostile_upstream
from tests.world_fixtures import add_provider, platform_key
from usage.models import SpendingCap, UsageRecord

MESSAGES = [{"role": "user", "content": "hi"}]
CHAT = {"model": "sim-eco", "messages": MESSAGES, "max_tokens": 8}


def post(world, body=None, *, content: bytes | None = None):
    return httpx.post(
        f"{world.base_url}/chat/completions",
        headers=world.headers(),
        json=body if content is None else None,
        content=content,
        timeout=10,
    )


def assert_400(world, response, param: str | None = None, says: str = "") -> dict:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param
    assert says in error["message"]
    assert world.sim.log == []
    world.gateway.flush_usage()
    assert not UsageRecord.objects.exists()
    return error


def records_written(world, count: int, timeout: float = 3.0) -> int:
    """Usage rows once `count` are written, or as many as there are when time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        world.gateway.flush_usage()
        written = UsageRecord.objects.count()
        if written >= count or time.monotonic() > deadline:
            return written
        time.sleep(0.05)


# --- the completion API -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "says"),
    [
        pytest.param(b"[1, 2]", "must be a JSON object", id="array"),
        pytest.param(b'"text"', "must be a JSON object", id="string"),
        pytest.param(b"null", "must be a JSON object", id="null"),
        pytest.param(b'{"model": "sim-eco", "messages": [\xff\xfe]}', "not valid JSON", id="bytes"),
        pytest.param(b'{"model": NaN}', "not valid JSON", id="nan"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_400(world, content, says):
    assert_400(world, post(world, content=content), says=says)


@pytest.mark.parametrize(
    "model",
    [
        pytest.param(42, id="number"),
        pytest.param({"id": "sim-eco"}, id="object"),
        pytest.param("   ", id="blank"),
        pytest.param("m" * 257, id="257-characters"),
    ],
)
def test_a_model_that_is_no_name_is_400(world, model):
    assert_400(world, post(world, {**CHAT, "model": model}), "model")


@pytest.mark.parametrize(
    "model",
    [
        "../../v1/chat/completions",
        "http://169.254.169.254/latest/meta-data",
        "sim-eco@fault=500",
        "sim-eco\u0000",
    ],
)
def test_a_model_name_smuggling_a_path_url_or_fault_is_just_unknown(world, model):
    response = post(world, {**CHAT, "model": model})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"
    assert world.sim.log == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("max_tokens", True, id="max-tokens-true"),
        pytest.param("max_tokens", 1.5, id="max-tokens-fraction"),
        pytest.param("max_tokens", 2**70, id="max-tokens-past-int64"),
        pytest.param("max_completion_tokens", "100", id="max-completion-tokens-text"),
        pytest.param("temperature", "0.5", id="temperature-text"),
        pytest.param("stream_options", ["include_usage"], id="stream-options-array"),
        pytest.param("tools", {"type": "function"}, id="tools-object"),
    ],
)
def test_an_option_of_the_wrong_type_is_400_naming_it(world, field, value):
    assert_400(world, post(world, {**CHAT, field: value}), field)


@pytest.mark.parametrize(
    "messages",
    [
        pytest.param([{"role": "user", "content": 42}], id="number-content"),
        pytest.param([{"role": "user", "content": ["text"]}], id="part-not-an-object"),
        pytest.param(["hi"], id="message-not-an-object"),
        pytest.param([{"role": "root", "content": "x"}], id="unknown-role"),
    ],
)
def test_a_malformed_message_is_400_naming_it(world, messages):
    assert_400(world, post(world, {**CHAT, "messages": messages}), "messages[0]")


def test_a_user_longer_than_an_end_user_id_is_400_and_the_longest_is_stored(world):
    assert_400(world, post(world, {**CHAT, "user": "u" * 129}), "user", "at most 128")

    assert post(world, {**CHAT, "user": "u" * 128}).status_code == 200
    assert records_written(world, 1) == 1
    assert EndUser.objects.get(tenant=world.tenant).external_id == "u" * 128


@pytest.mark.parametrize("user", ["ünïcødé-用户-🙂", "<script>alert(1)</script>", "a' OR '1'='1"])
def test_an_odd_but_printable_user_is_stored_exactly_as_sent(world, user):
    assert post(world, {**CHAT, "user": user}).status_code == 200

    assert records_written(world, 1) == 1
    record = UsageRecord.objects.select_related("end_user").get()
    assert record.end_user.external_id == user
    assert record.end_user.tenant_id == world.tenant.pk


@pytest.mark.parametrize("user", ["\u202eevil\u202c", "tab\there", "zero\u200bwidth"])
def test_a_user_with_invisible_or_direction_characters_is_refused(world, user):
    # Shown on pages as an end user's name, they could pass for another user (Trojan Source).
    assert_400(world, post(world, {**CHAT, "user": user}), "user", "control")
    assert records_written(world, 0, timeout=0.3) == 0


def test_a_user_with_a_nul_byte_never_stops_usage_being_written(world):
    hostile = post(world, {**CHAT, "user": "eve\u0000"})
    assert hostile.status_code == 400
    assert hostile.json()["error"]["param"] == "user"

    assert post(world, CHAT).status_code == 200
    assert records_written(world, 1 + (hostile.status_code == 200)) >= 1
    assert UsageRecord.objects.filter(end_user__isnull=True).exists()


def test_an_upstream_error_with_a_nul_byte_never_stops_usage_being_written(world):
    with hostile_upstream(lambda path, key: (500, error_body("broken\u0000upstream"))) as url:
        hostile = add_provider(url, "hostile")
        platform_key(hostile, "sim-platform-hostile-0001")
        CatalogModelFactory(provider=hostile, model_id="nul-model", name="nul-model")
        world.gateway.sync()

        failed = post(world, {**CHAT, "model": "nul-model"})

    # Another model takes over (200) or every candidate failed (502): either way the
    # hostile attempt is recorded, and so is the next request.
    assert failed.status_code in (200, 502)
    assert "\u0000" not in failed.text
    attempts = 1 + (failed.status_code == 200)
    assert post(world, CHAT).status_code == 200
    assert records_written(world, attempts + 1) == attempts + 1


# --- the management API -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[" * 50_000, id="arrays"),
        pytest.param(b'{"a":' * 20_000 + b"1" + b"}" * 20_000, id="objects"),
    ],
)
def test_json_nested_past_the_parsers_depth_is_400_and_saves_nothing(tenant, body):
    client = with_key(tenant, scopes=["manage"])
    before = stored()

    response = client.generic("POST", "/api/v1/api-keys", body, content_type="application/json")

    assert response.status_code == 400
    assert "nested too deeply" in response.json()["detail"]
    assert stored() == before


@pytest.fixture
def provider(sim):
    provider = ProviderFactory(slug="simulated", base_url=f"{sim.url}/v1")
    CatalogModelFactory(provider=provider, model_id="sim-eco")
    return provider


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param("sk-live-\u00e9t\u00e9-0001", id="non-ascii"),
        pytest.param("sk-live-0001\r\nX-Injected: yes", id="header-injection"),
        pytest.param("sk-live 0001", id="inner-space"),
        pytest.param("sk-live-\u0000-0001", id="nul"),
    ],
)
def test_a_secret_no_header_can_carry_is_400_before_any_provider_call(
    tenant, provider, sim, secret
):
    client = signed_in(tenant, "owner")
    before = stored()

    response = client.post(
        "/api/v1/provider-keys",
        {"provider": provider.slug, "scope": "tenant", "secret": secret},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["detail"].startswith("secret:")
    assert secret not in response.content.decode()
    assert sim.log == []
    assert stored() == before


def test_the_keys_page_refuses_a_secret_no_header_can_carry(client, tenant, provider, sim):
    client.force_login(MembershipFactory(tenant=tenant, role="owner").user)

    response = client.post(
        reverse("providers:key-add"),
        {"provider": provider.pk, "scope": "tenant", "secret": "sk-\u00e9\u00e9-0001"},
    )

    assert response.status_code == 200
    assert "paste it exactly as the provider shows it" in response.content.decode()
    assert not ProviderKey.objects.exists()
    assert sim.log == []


def test_a_page_past_the_largest_is_cut_to_it_and_an_offset_past_the_end_is_empty(tenant):
    client = with_key(tenant, scopes=["manage"])
    for n in range(3):
        TenantAPIKeyFactory(tenant=tenant, name=f"key {n}")

    huge = client.get("/api/v1/api-keys", {"limit": str(2**70)})
    past = client.get("/api/v1/api-keys", {"offset": str(2**70)})

    assert huge.status_code == 200
    assert len(huge.json()["results"]) == 4
    assert "limit=1000" in (huge.json()["next"] or "limit=1000")
    assert past.status_code == 200
    assert past.json()["results"] == []
    assert past.json()["count"] == 4


@pytest.mark.parametrize("amount", ["NaN", "Infinity", "-Infinity", "1e400", "-5"])
def test_a_cap_amount_that_is_not_money_is_400(tenant, amount):
    client = with_key(tenant, scopes=["manage"])

    response = client.post(
        "/api/v1/spending-caps",
        {"scope": "tenant", "amount_usd": amount, "mode": "hard"},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["detail"].startswith("amount_usd:")
    assert not SpendingCap.objects.exists()


@pytest.mark.parametrize(
    ("path", "data", "field"),
    [
        ("/api/v1/api-keys", {"name": "bot\u0000"}, "name"),
        ("/api/v1/members/invite", {"email": "a\u0000@example.com"}, "email"),
        (
            "/api/v1/spending-caps",
            {"scope": "user", "end_user": "eve\u0000", "amount_usd": "5", "mode": "hard"},
            "end_user",
        ),
    ],
)
def test_a_nul_byte_in_any_text_field_is_400_not_a_database_error(tenant, path, data, field):
    client = with_key(tenant, scopes=["manage"])
    before = stored()

    response = client.post(path, data, format="json")

    assert response.status_code == 400
    assert response.json()["detail"].startswith(f"{field}:")
    assert stored() == before


def test_a_cap_for_an_end_user_id_longer_than_the_column_is_400(tenant):
    client = with_key(tenant, scopes=["manage"])

    response = client.post(
        "/api/v1/spending-caps",
        {"scope": "user", "end_user": "e" * 129, "amount_usd": "5", "mode": "hard"},
        format="json",
    )

    assert response.status_code == 400
    assert not EndUser.objects.exists()
    assert not SpendingCap.objects.filter(amount_usd=Decimal(5)).exists()
