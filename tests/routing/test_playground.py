"""The playground: a page with a one-hour token that calls the live gateway as the member's end
user, streams the answer, and is routed, limited and recorded like any request."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest
from django.core import signing
from django.urls import reverse

from routing import selectors
from routing.models import LLMSettings
from tenants.models import EndUser
from tenants.services import update_tenant
from tests.factories import (
    CatalogModelFactory,
    MembershipFactory,
    ProviderFactory,
    ProviderKeyFactory,
    TenantFactory,
)
from usage.choices import Outcome
from usage.models import UsageRecord

PLAYGROUND = reverse("routing:playground")
PROMPT = {"messages": [{"role": "user", "content": "Say hello"}]}


def member_token(client, tenant, role="member"):
    user = MembershipFactory(tenant=tenant, role=role).user
    client.force_login(user)
    response = client.get(PLAYGROUND)
    assert response.status_code == 200
    return user, response.context["token"]


def post(world, token, **body):
    return httpx.post(
        f"{world.base_url}/chat/completions",
        headers={"Authorization": f"Bearer {token}"},
        json={"model": "auto", **PROMPT, **body},
        timeout=10,
    )


def wait_for_usage(world, **filters):
    deadline = time.monotonic() + 5
    while True:
        world.gateway.flush_usage()
        records = list(UsageRecord.objects.filter(**filters))
        if records or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


def expired_token(payload: dict) -> str:
    """A token signed correctly but 61 minutes ago."""

    class PastSigner(signing.TimestampSigner):
        def timestamp(self):
            return signing.b62_encode(int(time.time()) - 3660)

    signer = PastSigner(salt=selectors.PLAYGROUND_TOKEN_SALT)
    return selectors.PLAYGROUND_TOKEN_PREFIX + signer.sign_object(payload)


@pytest.fixture
def world(world):
    """The shared world; usage still queued is written before the database is flushed (a
    batch written during the flush can deadlock with it)."""
    yield world
    world.gateway.flush_usage()


# --- the page --------------------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_log_in(client, db):
    response = client.get(PLAYGROUND)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_a_viewer_may_not_use_the_playground(client, viewer):
    client.force_login(viewer)
    assert client.get(PLAYGROUND).status_code == 403


def test_the_page_holds_a_token_for_the_members_own_end_user(client, tenant, other_tenant):
    user, token = member_token(client, tenant)
    end_user = EndUser.objects.get(tenant=tenant, user=user)
    assert token.startswith("sy-pg-")
    payload = signing.loads(
        token.removeprefix("sy-pg-"), salt=selectors.PLAYGROUND_TOKEN_SALT, max_age=3600
    )
    assert payload == {"t": tenant.pk, "u": end_user.pk, "x": end_user.external_id}
    response = client.get(PLAYGROUND)
    assert f'data-token="{response.context["token"]}"'.encode() in response.content
    assert b"playground.js" in response.content
    assert "no-store" in response["Cache-Control"]
    assert not EndUser.objects.filter(tenant=other_tenant).exists()


def test_the_model_choice_lists_only_what_the_member_can_reach(world, client):
    member_token(client, world.tenant)
    other = TenantFactory(slug="other")
    private = ProviderFactory(slug="private", tenant=other)
    ProviderKeyFactory(provider=private, tenant=other)
    CatalogModelFactory(provider=private, model_id="private-model", name="private-model")
    html = client.get(PLAYGROUND).content.decode()
    assert '<option value="sim-balanced">' in html
    assert '<option value="anthropic/claude-sim-sonnet">' in html
    assert "private-model" not in html
    assert "sim-embed" not in html


# --- the token at the gateway ----------------------------------------------------------------


def test_a_playground_request_streams_and_is_recorded_as_the_member(world, client):
    user, token = member_token(client, world.tenant)
    end_user = EndUser.objects.get(tenant=world.tenant, user=user)
    body = {
        "model": "auto",
        **PROMPT,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with httpx.stream(
        "POST",
        f"{world.base_url}/chat/completions",
        headers={"Authorization": f"Bearer {token}"},
        json=body,
        timeout=10,
    ) as response:
        assert response.status_code == 200
        headers = response.headers
        lines = [line for line in response.iter_lines() if line]

    assert headers["x-switchyard-provider"] == "sim-openai"
    assert headers["x-switchyard-model"] == "sim-eco"
    assert headers["x-switchyard-attempts"] == "1"
    chunks = [orjson.loads(line[6:]) for line in lines if line.startswith("data: {")]
    text = "".join(
        choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"]
    )
    assert text
    usage = chunks[-1]["usage"]
    assert usage["completion_tokens"] > 0
    assert lines[-1].startswith(": x-switchyard-cost-usd=")
    cost = lines[-1].split("=", 1)[1]

    (record,) = wait_for_usage(world, tenant=world.tenant)
    assert record.api_key_id is None
    assert record.end_user_id == end_user.pk
    assert record.outcome == Outcome.SUCCESS
    assert record.is_stream
    assert record.output_tokens == usage["completion_tokens"]
    assert str(record.cost_usd.normalize()) == str(type(record.cost_usd)(cost).normalize())


def test_the_members_own_override_applies_to_their_playground_requests(world, client):
    user, token = member_token(client, world.tenant)
    end_user = EndUser.objects.get(tenant=world.tenant, user=user)
    LLMSettings.objects.create(tenant=world.tenant, end_user=end_user, power_level="precision")
    world.gateway.sync()
    assert post(world, token).headers["x-switchyard-model"] == "anthropic/claude-sim-sonnet"
    assert post(world, world.api_key).headers["x-switchyard-model"] == "sim-eco"


def test_the_token_lists_models_but_may_not_embed(world, client):
    _, token = member_token(client, world.tenant)
    headers = {"Authorization": f"Bearer {token}"}
    models = httpx.get(f"{world.base_url}/models", headers=headers, timeout=10)
    assert models.status_code == 200
    assert "sim-eco" in {m["id"] for m in models.json()["data"]}
    embed = httpx.post(
        f"{world.base_url}/embeddings",
        headers=headers,
        json={"model": "sim-embed", "input": "x"},
        timeout=10,
    )
    assert embed.status_code == 403
    assert embed.json()["error"]["code"] == "insufficient_scope"


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"), id="signature"),
        pytest.param(
            lambda t: (
                selectors.PLAYGROUND_TOKEN_PREFIX
                + signing.dumps(
                    {**signing.loads(t[6:], salt=selectors.PLAYGROUND_TOKEN_SALT), "t": 999_999},
                    salt="some.other.salt",
                )
            ),
            id="other-salt",
        ),
        pytest.param(
            lambda t: expired_token(signing.loads(t[6:], salt=selectors.PLAYGROUND_TOKEN_SALT)),
            id="expired",
        ),
        pytest.param(lambda t: "sy-pg-", id="empty"),
        pytest.param(lambda t: "sy-pg-not:a:token", id="garbage"),
    ],
)
def test_a_forged_or_expired_token_is_refused(world, client, forge):
    _, token = member_token(client, world.tenant)
    response = post(world, forge(token))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    world.gateway.flush_usage()
    assert not UsageRecord.objects.exists()


def test_a_token_signed_just_inside_the_hour_still_works(world, client):
    _, token = member_token(client, world.tenant)
    payload = signing.loads(token[6:], salt=selectors.PLAYGROUND_TOKEN_SALT)

    class RecentSigner(signing.TimestampSigner):
        def timestamp(self):
            return signing.b62_encode(int(time.time()) - 3500)

    recent = "sy-pg-" + RecentSigner(salt=selectors.PLAYGROUND_TOKEN_SALT).sign_object(payload)
    assert post(world, recent).status_code == 200


def test_a_token_stops_working_when_its_tenant_is_suspended(world, client):
    _, token = member_token(client, world.tenant)
    assert post(world, token).status_code == 200

    update_tenant(tenant=world.tenant, is_active=False)
    world.gateway.sync()

    response = post(world, token)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "tenant_suspended"


def test_the_page_costs_a_fixed_number_of_queries(client, tenant, django_assert_max_num_queries):
    for n in range(20):
        CatalogModelFactory(model_id=f"m-{n}")
    member_token(client, tenant)
    with django_assert_max_num_queries(18):
        assert client.get(PLAYGROUND).status_code == 200
