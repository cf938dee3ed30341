"""Hard caps hold under concurrency; streams are charged like JSON; changes apply at once."""

from __future__ import annotations

from decimal import Decimal

import httpx

from routing.gateway.limits import max_cost
from tests.usage.limits_helpers import fire, recorded_spend, run
from usage.choices import CapScope, Outcome
from usage.models import SpendingCap, UsageRecord
from usage.services import set_spending_cap

# sim-precision ($10 / $30 per 1M): about $0.0007 a request, so cent caps fill quickly.
BODY = {
    "model": "sim-precision",
    "messages": [{"role": "user", "content": "count me"}],
    "max_tokens": 20,
}


def reservation(world) -> Decimal:
    option = world.gateway.state.snapshot.models[world.models["sim-precision"].pk]
    from routing.gateway.requests import parse_chat

    return max_cost(option, parse_chat(dict(BODY)).prompt_tokens, BODY["max_tokens"])


def test_200_concurrent_requests_never_overspend_a_hard_cap(world):
    cap = Decimal("0.02")
    SpendingCap.objects.create(
        tenant=world.tenant, scope=CapScope.TENANT, amount_usd=cap, mode="hard"
    )
    world.gateway.sync()

    results = run(fire(world.gateway.url, world.api_key, [BODY] * 200))

    statuses = [status for status, _, _ in results]
    assert set(statuses) <= {200, 402}
    assert 402 in statuses
    assert 200 in statuses
    world.gateway.flush_usage()
    assert recorded_spend(tenant=world.tenant) <= cap + reservation(world)
    assert UsageRecord.objects.filter(outcome=Outcome.SUCCESS).count() == statuses.count(200)
    after = httpx.post(f"{world.base_url}/chat/completions", headers=world.headers(), json=BODY)
    assert after.status_code == 402
    assert after.json()["error"]["code"] == "spending_cap_reached"


def test_a_new_end_users_first_burst_is_held_to_the_default_per_user_cap(world):
    cap = Decimal("0.01")
    SpendingCap.objects.create(
        tenant=world.tenant, scope=CapScope.EACH_USER, amount_usd=cap, mode="hard"
    )
    world.gateway.sync()

    results = run(fire(world.gateway.url, world.api_key, [{**BODY, "user": "never-seen"}] * 60))

    assert {status for status, _, _ in results} == {200, 402}
    world.gateway.flush_usage()
    assert recorded_spend(end_user__external_id="never-seen") <= cap + reservation(world)
    other = httpx.post(
        f"{world.base_url}/chat/completions",
        headers=world.headers(),
        json={**BODY, "user": "someone-else"},
    )
    assert other.status_code == 200


def test_streams_are_charged_and_capped_like_json(world):
    cap = Decimal("0.01")
    SpendingCap.objects.create(
        tenant=world.tenant, scope=CapScope.TENANT, amount_usd=cap, mode="hard"
    )
    world.gateway.sync()
    stream_body = {**BODY, "stream": True}

    statuses = []
    for _ in range(60):
        with httpx.stream(
            "POST", f"{world.base_url}/chat/completions", headers=world.headers(), json=stream_body
        ) as r:
            r.read()
            statuses.append(r.status_code)
        if r.status_code == 402:
            break

    assert statuses[-1] == 402
    world.gateway.flush_usage()
    streamed = UsageRecord.objects.filter(is_stream=True, outcome=Outcome.SUCCESS)
    assert streamed.count() == statuses.count(200)
    assert all(r.cost_usd > 0 for r in streamed)
    assert recorded_spend(tenant=world.tenant) <= cap + reservation(world)


def test_a_cap_change_applies_to_the_next_request_without_restart(world):
    assert (
        httpx.post(
            f"{world.base_url}/chat/completions", headers=world.headers(), json=BODY
        ).status_code
        == 200
    )

    set_spending_cap(
        tenant=world.tenant, scope=CapScope.TENANT, amount_usd=Decimal("0"), mode="hard", actor=None
    )
    world.gateway.wait_for_config()

    refused = httpx.post(f"{world.base_url}/chat/completions", headers=world.headers(), json=BODY)
    assert refused.status_code == 402
    assert refused.json()["error"]["code"] == "spending_cap_reached"


def test_a_soft_cap_never_refuses(world):
    SpendingCap.objects.create(
        tenant=world.tenant, scope=CapScope.TENANT, amount_usd=Decimal("0"), mode="soft"
    )
    world.gateway.sync()

    assert (
        httpx.post(
            f"{world.base_url}/chat/completions", headers=world.headers(), json=BODY
        ).status_code
        == 200
    )


def test_n_choices_reserve_n_times_the_output_so_a_cap_refuses_them_up_front(world):
    # sim-precision writes at $30 / 1M: 4,000 tokens may cost $0.12, eight choices $0.96.
    body = {**BODY, "max_tokens": 4000}
    SpendingCap.objects.create(
        tenant=world.tenant, scope=CapScope.TENANT, amount_usd=Decimal("0.5"), mode="hard"
    )
    world.gateway.sync()
    url = f"{world.base_url}/chat/completions"

    eight = httpx.post(url, headers=world.headers(), json={**body, "n": 8})
    single = httpx.post(url, headers=world.headers(), json=body)

    assert eight.status_code == 402, eight.text
    assert eight.json()["error"]["code"] == "spending_cap_reached"
    assert single.status_code == 200, single.text
