"""Redis restarted (empty) under load: requests keep being answered, rate limits fail open,
money limits fail closed while it is down, spend counters are re-seeded from the database
when it is back, and no usage is lost."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import time
from decimal import Decimal

import httpx
import pytest
import redis
from django.utils import timezone

from tenants.models import Plan
from tests.factories import CatalogModelFactory, TenantAPIKeyFactory, TenantFactory
from tests.faults.load import Job, Load, check_recorded, duplicates, tally, usage_rows
from tests.faults.services import RedisServer
from tests.world_fixtures import add_provider, platform_key
from usage import counters, selectors
from usage.choices import CapScope
from usage.limiter import to_units
from usage.models import SpendingCap, UsageRecord
from usage.periods import period_bounds

BODY = {"model": "sim-eco", "messages": [{"role": "user", "content": "still there?"}]}
DOWN_SECONDS = 2.5  # longer than the settle retries (1.2 s): the restart is a clean cut


@pytest.fixture
def restartable_redis():
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    server = RedisServer().start()
    yield server
    server.kill()


def unthrottle(*plans: Plan) -> None:
    for plan in plans:
        plan.requests_per_minute = plan.requests_per_hour = plan.requests_per_day = None
        plan.tokens_per_minute = None
        plan.save()


def test_a_redis_restart_under_load_loses_no_usage_and_reseeds_spend_from_the_database(
    world, gateway_process, restartable_redis
):
    enterprise = Plan.objects.get(slug="enterprise")  # invoiced: no credits to guard
    unthrottle(world.tenant.plan, enterprise)
    capped = TenantFactory(slug="capped", plan=enterprise)
    SpendingCap.objects.create(
        tenant=capped, scope=CapScope.TENANT, amount_usd=Decimal(50), mode="hard"
    )
    invoiced = TenantFactory(slug="invoiced", plan=enterprise)
    keys = {
        "prepaid": world.api_key,  # credits: money, fails closed
        "capped": TenantAPIKeyFactory(tenant=capped).raw_key,  # hard cap: fails closed
        "invoiced": TenantAPIKeyFactory(tenant=invoiced).raw_key,  # rate limits only: open
    }
    server = gateway_process(REDIS_URL=restartable_redis.url)
    tenants = itertools.cycle(keys.items())
    marks: dict[str, float] = {}

    def next_job() -> Job:
        name, key = next(tenants)
        return Job(key, BODY, kind=name)

    async def restart_redis(load: Load) -> None:
        await load.wait_for(lambda a: len(a) >= 90, 20)  # every counter seeded and in use
        marks["killed"] = time.monotonic()
        restartable_redis.kill()
        await asyncio.sleep(DOWN_SECONDS)
        marks["restarting"] = time.monotonic()
        await asyncio.to_thread(restartable_redis.start)
        marks["restarted"] = time.monotonic()
        await load.wait_for(
            lambda a: sum(x.sent_at > marks["restarted"] and x.ok for x in a) >= 90, 20
        )

    load = Load(server.url, concurrency=12, pause=0.02)
    answers = asyncio.run(load.run(next_job, restart_redis))

    counts = tally(answers)
    assert set(counts) <= {(200, None), (503, "limits_unavailable")}, counts
    assert all(a.complete for a in answers), [a.error for a in answers if not a.complete][:5]
    invoiced_answers = [a for a in answers if a.job.kind == "invoiced"]
    assert all(a.ok for a in invoiced_answers), tally(invoiced_answers)  # rate limits: open
    # Requests sent once Redis was gone and answered before it came back: refused when they
    # guard money, and only those.
    down = load.ended_between(marks["killed"] + 0.1, marks["restarting"])
    assert {a.job.kind for a in down} == set(keys)
    refused = [a for a in down if a.job.kind != "invoiced"]
    assert tally(refused) == {(503, "limits_unavailable"): len(refused)}
    # Everything sent after the restart is served again, caps and credits included.
    after = [a for a in answers if a.sent_at > marks["restarted"]]
    assert tally(after) == {(200, None): len(after)}
    assert {a.job.kind for a in after} == set(keys)

    # Zero usage lost: one success row per 200, nothing for a refusal, nothing twice.
    served = [a for a in answers if a.ok]
    tenant_ids = [world.tenant.pk, capped.pk, invoiced.pk]
    deadline = time.monotonic() + 15
    while UsageRecord.objects.filter(tenant_id__in=tenant_ids).count() < len(served):
        assert time.monotonic() < deadline, "usage rows missing"
        time.sleep(0.2)
    time.sleep(0.5)  # the last settles, and anything that would be written twice
    rows = usage_rows(tenant_id__in=tenant_ids)
    assert duplicates(rows) == []
    recorded = check_recorded(answers, rows)
    assert recorded["problems"] == []
    assert recorded["counts"]["ok"] == len(served)
    assert sum(len(g) for g in rows.values()) == len(served)

    # The counters Redis lost were re-seeded from the database, and kept exact since.
    live = redis.Redis.from_url(restartable_redis.url)
    start, end = period_bounds(capped.billing_day, timezone.now())
    spent_key, _ = counters.budget_keys("t", str(capped.pk), start.date())
    db_spent = selectors.spent_between(tenant_id=capped.pk, start=start, end=end)
    assert db_spent > 0
    assert int(live.get(spent_key)) == to_units(db_spent)
    balance_key, _ = counters.credit_keys(world.tenant.pk)
    db_balance = selectors.credit_balance(tenant_id=world.tenant.pk)
    assert db_balance < 100
    assert int(live.get(balance_key)) == to_units(db_balance)
    live.close()
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert 'switchyard_limits_unavailable_total{kind="admit"}' in metrics


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason=(
        "routing/gateway/limits.py: since f2d7e80 a settle of a reservation made before the "
        "restart is dropped, but a request still under way when the spend counter is re-seeded "
        "writes its usage row after the seed read the database: its cost is counted nowhere "
        "(an under-count: the hard cap lets that much more through). Before f2d7e80 the same "
        "test over-counted the requests that ended while Redis was away (a retried settle)."
    ),
)
def test_requests_under_way_across_a_quick_redis_restart_are_counted_once_in_the_new_counter(
    world, gateway_process, restartable_redis
):
    """Redis restarts (empty) in 0.4 s. Short requests (0.3 s upstream) end while it is away
    (their settles fail, their rows reach the database before the re-seed); long ones (2 s)
    are under way for the whole restart (their rows come after it); quick ones keep coming,
    so the spend counter is re-seeded from the database at once. When all have ended the
    counter must equal the database's spend: each request counted once, not twice, not
    zero times."""
    enterprise = Plan.objects.get(slug="enterprise")
    unthrottle(enterprise)
    for name, ms in (("short", 300), ("long", 2000)):
        provider = add_provider(world.sim.url, name, path=f"/latency/{ms}")
        platform_key(provider, f"sim-platform-{name}-0005")
        CatalogModelFactory(provider=provider, model_id=f"sim-{name}", name=f"sim-{name}")
    capped = TenantFactory(slug="capped", plan=enterprise)
    SpendingCap.objects.create(
        tenant=capped, scope=CapScope.TENANT, amount_usd=Decimal(50), mode="hard"
    )
    key = TenantAPIKeyFactory(tenant=capped).raw_key
    server = gateway_process(REDIS_URL=restartable_redis.url)
    loads = {
        "long": Load(server.url, concurrency=4),
        "short": Load(server.url, concurrency=4),
        "quick": Load(server.url, concurrency=4, pause=0.02),
    }
    jobs = {
        name: Job(key, {**BODY, "model": "sim-eco" if name == "quick" else f"sim-{name}"})
        for name in loads
    }
    marks: dict[str, float] = {}

    async def restart_quickly(load: Load) -> None:
        # The four long workers run in step: once the first four answers are in, the next
        # four requests have just left, and are under way for the whole restart.
        await loads["long"].wait_for(lambda a: sum(x.ok for x in a) >= 4, 30)
        await asyncio.sleep(0.3)
        marks["killed"] = time.monotonic()
        restartable_redis.kill()
        await asyncio.sleep(0.4)
        await asyncio.to_thread(restartable_redis.start)
        marks["restarted"] = time.monotonic()
        loads["long"].stopped = True
        await loads["long"].wait_for(lambda a: len(a) >= 8, 30)
        loads["short"].stopped = loads["quick"].stopped = True

    async def run_all() -> None:
        await asyncio.gather(
            *(
                load.run(lambda job=jobs[name]: job, restart_quickly if name == "long" else None)
                for name, load in loads.items()
            )
        )

    asyncio.run(run_all())

    answers = [a for load in loads.values() for a in load.answers]
    assert set(tally(answers)) <= {(200, None), (503, "limits_unavailable")}
    ended_while_away = [
        a
        for a in loads["short"].answers
        if a.ok and a.sent_at < marks["killed"] < a.ended_at < marks["restarted"]
    ]
    across = [
        a
        for a in loads["long"].answers
        if a.ok and a.sent_at < marks["killed"] and a.ended_at > marks["restarted"]
    ]
    if not ended_while_away or not across:
        pytest.fail("the restart did not fall where the test needs it: nothing was tested")
    served = sum(a.ok for a in answers)
    deadline = time.monotonic() + 15
    while UsageRecord.objects.filter(tenant=capped).count() < served:
        if time.monotonic() > deadline:
            pytest.fail("usage rows missing")
        time.sleep(0.2)
    time.sleep(1.5)  # every settle retry has run
    live = redis.Redis.from_url(restartable_redis.url)
    start, end = period_bounds(capped.billing_day, timezone.now())
    spent_key, _ = counters.budget_keys("t", str(capped.pk), start.date())
    db_spent = to_units(selectors.spent_between(tenant_id=capped.pk, start=start, end=end))
    counted = int(live.get(spent_key))
    live.close()
    assert counted == db_spent, (
        f"counter {counted} vs database {db_spent} units; {len(ended_while_away)} requests "
        f"ended while Redis was away, {len(across)} were under way across the restart"
    )
