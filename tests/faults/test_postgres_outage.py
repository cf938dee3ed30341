"""PostgreSQL unreachable under load: completions keep being served from the cached
configuration, usage waits in memory and the journal and is written once the database is
back, exactly once; a counter that needs the database to be seeded fails closed (503) when
it guards money, never with a 500."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db import connection

from tenants import config_version
from tenants.models import Plan
from tests.factories import CatalogModelFactory, TenantAPIKeyFactory, TenantFactory
from tests.faults.load import Job, Load, check_recorded, duplicates, tally, usage_rows
from tests.faults.services import TcpProxy
from usage.choices import CapScope
from usage.models import SpendingCap, UsageRecord

DOWN_SECONDS = 3.0
KINDS = ("prepaid", "hard-known", "hard-fresh", "soft-fresh")


def chat(user: str | None = None, model: str = "sim-eco") -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": "are you there?"}]}
    if user:
        body["user"] = user
    return body


@pytest.fixture
def pg_proxy():
    db = connection.settings_dict
    proxy = TcpProxy(int(db["PORT"] or 5432), db["HOST"] or "127.0.0.1").start()
    yield proxy
    proxy.stop()


def through(proxy: TcpProxy) -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER'] or 'postgres'}@127.0.0.1:{proxy.port}/{db['NAME']}"


def journal_folder(proxy: TcpProxy) -> Path:
    """The journal folder of a gateway whose database is reached through `proxy`
    (usage.journal.directory, as that process computes it)."""
    db = connection.settings_dict
    identity = f"{db['ENGINE']}|127.0.0.1|{proxy.port}|{db['NAME']}"
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return Path(settings.SWITCHYARD_USAGE_JOURNAL_DIR) / digest


def unthrottle(*plans: Plan) -> None:
    for plan in plans:
        plan.requests_per_minute = plan.requests_per_hour = plan.requests_per_day = None
        plan.tokens_per_minute = None
        plan.save()


def wait_until(predicate, seconds: float, message: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, message
        time.sleep(0.1)


def add_model(world, name: str) -> None:
    CatalogModelFactory(provider=world.openai, model_id=f"sim-{name}", name=name)
    config_version.bump()  # what the catalog services do on commit


def test_postgres_unreachable_under_load_serves_from_cache_and_loses_no_usage(
    world, gateway_process, pg_proxy
):
    enterprise = Plan.objects.get(slug="enterprise")
    unthrottle(world.tenant.plan, enterprise)
    hard = TenantFactory(slug="per-user-hard", plan=enterprise)
    SpendingCap.objects.create(
        tenant=hard, scope=CapScope.EACH_USER, amount_usd=Decimal(5), mode="hard"
    )
    soft = TenantFactory(slug="per-user-soft", plan=enterprise)
    SpendingCap.objects.create(
        tenant=soft, scope=CapScope.EACH_USER, amount_usd=Decimal(5), mode="soft"
    )
    hard_key = TenantAPIKeyFactory(tenant=hard).raw_key
    soft_key = TenantAPIKeyFactory(tenant=soft).raw_key
    server = gateway_process(DATABASE_URL=through(pg_proxy))
    fresh = itertools.count()
    kinds = itertools.cycle(KINDS)

    def next_job() -> Job:
        kind = next(kinds)
        if kind == "prepaid":  # credits seeded before the outage
            return Job(world.api_key, chat(), kind)
        if kind == "hard-known":  # end users whose cap counter is seeded before the outage
            return Job(hard_key, chat(f"known-{next(fresh) % 4}"), kind)
        key = hard_key if kind == "hard-fresh" else soft_key
        return Job(key, chat(f"fresh-{next(fresh)}"), kind)  # a counter never seeded

    marks: dict[str, float] = {}
    rows_at_restore: list[int] = []

    async def cut_postgres(load: Load) -> None:
        await load.wait_for(lambda a: sum(x.ok for x in a) >= 80, 20)
        marks["cut"] = time.monotonic()
        pg_proxy.cut()
        await asyncio.sleep(DOWN_SECONDS / 2)
        # A configuration change while the database is unreachable: the version moves
        # (Redis), the reload fails, the gateway keeps serving the last good snapshot.
        await asyncio.to_thread(add_model, world, "added-while-down")
        await asyncio.sleep(DOWN_SECONDS / 2)
        marks["restoring"] = time.monotonic()
        served_during = [
            a.request_id for a in load.ended_between(marks["cut"], marks["restoring"]) if a.ok
        ]
        rows_at_restore.append(
            await asyncio.to_thread(
                lambda: UsageRecord.objects.filter(request_id__in=served_during).count()
            )
        )
        marks["served_during"] = len(served_during)
        pg_proxy.restore()
        marks["restored"] = time.monotonic()
        await load.wait_for(
            lambda a: sum(x.sent_at > marks["restored"] and x.ok for x in a) >= 80, 20
        )

    load = Load(server.url, concurrency=12, pause=0.02)
    answers = asyncio.run(load.run(next_job, cut_postgres))

    counts = tally(answers)
    assert set(counts) <= {(200, None), (503, "limits_unavailable")}, counts
    assert all(a.complete for a in answers), [a.error for a in answers if not a.complete][:5]
    assert pg_proxy.refused > 0  # the gateway did try the database while it was gone
    down = load.ended_between(marks["cut"] + 0.1, marks["restoring"])
    by_kind = {kind: tally(a for a in down if a.job.kind == kind) for kind in KINDS}
    # Served from the cached configuration and the counters already in Redis...
    for kind in ("prepaid", "hard-known", "soft-fresh"):
        assert by_kind[kind] == {(200, None): by_kind[kind].total()}, (kind, by_kind)
        assert by_kind[kind].total() > 0
    # ...but a hard cap never checked against the database is refused, and says why.
    assert by_kind["hard-fresh"] == {(503, "limits_unavailable"): by_kind["hard-fresh"].total()}
    assert by_kind["hard-fresh"].total() > 0
    # Nothing served during the outage was in the database when it ended (memory, journal).
    assert marks["served_during"] > 0
    assert rows_at_restore == [0]
    # Refusals only while the database was away.
    refusals = [a for a in answers if not a.ok]
    assert all(marks["cut"] < a.ended_at and a.sent_at < marks["restored"] for a in refusals)

    # Zero usage lost, none written twice.
    served = [a for a in answers if a.ok]
    tenant_ids = [world.tenant.pk, hard.pk, soft.pk]
    wait_until(
        lambda: UsageRecord.objects.filter(tenant_id__in=tenant_ids).count() >= len(served),
        20,
        "usage rows missing after the database came back",
    )
    time.sleep(0.5)
    rows = usage_rows(tenant_id__in=tenant_ids)
    assert duplicates(rows) == []
    recorded = check_recorded(answers, rows)
    assert recorded["problems"] == []
    assert sum(len(g) for g in rows.values()) == len(served)

    # The change made while the database was away is picked up once it is back; so is one
    # made after.
    def serves(model: str) -> bool:
        response = httpx.post(
            f"{server.url}/v1/chat/completions",
            headers=world.headers(),
            json=chat(model=model),
            timeout=10,
        )
        return response.status_code == 200

    wait_until(lambda: serves("added-while-down"), 10, "the change made while down was lost")
    add_model(world, "added-after")
    wait_until(lambda: serves("added-after"), 10, "the change made after was not picked up")

    # A graceful stop writes what is left: the journal folder ends empty.
    server.stop()
    assert list(journal_folder(pg_proxy).glob("*.usage")) == []


def test_a_batch_whose_commit_reply_is_lost_is_not_written_twice(world, gateway_process, pg_proxy):
    """The connection drops after PostgreSQL committed a batch but before the gateway heard
    it: the writer sees an error, and its retry must not insert the batch again."""
    unthrottle(world.tenant.plan)
    server = gateway_process(DATABASE_URL=through(pg_proxy))

    async def lose_a_commit(load: Load) -> None:
        await load.wait_for(lambda a: sum(x.ok for x in a) >= 20, 20)
        pg_proxy.lose_next_commit_reply()
        await load.wait_for(lambda a: pg_proxy.commits_lost == 1, 10)
        count = len(load.answers)
        await load.wait_for(lambda a: len(a) >= count + 60, 20)

    jobs = itertools.repeat(Job(world.api_key, chat()))
    load = Load(server.url, concurrency=8, pause=0.02)
    answers = asyncio.run(load.run(lambda: next(jobs), lose_a_commit))

    assert tally(answers) == {(200, None): len(answers)}
    wait_until(
        lambda: UsageRecord.objects.filter(tenant=world.tenant).count() >= len(answers),
        20,
        "usage rows missing",
    )
    time.sleep(1)  # the retry of the lost batch, had it been written twice
    rows = usage_rows(tenant=world.tenant)
    assert duplicates(rows) == []
    assert check_recorded(answers, rows)["problems"] == []
    assert sum(len(g) for g in rows.values()) == len(answers)
