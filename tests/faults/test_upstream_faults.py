"""Upstream faults under concurrent load: 429 with Retry-After, 500, a hang (timeout), a stream
cut mid-way and a slow drip of bytes. Each request gets a success from the fallback or the
documented error, and every upstream attempt the simulator saw has exactly one usage row
with the right outcome: nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from decimal import Decimal

import aiohttp

from routing.models import LLMSettings
from tests.factories import CatalogModelFactory, TenantAPIKeyFactory, TenantFactory
from tests.faults.load import Job, Load, check_recorded, duplicates, tally, usage_rows
from tests.usage.limits_helpers import unthrottled
from tests.world_fixtures import add_provider, platform_key
from usage.choices import Outcome
from usage.models import CreditLedgerEntry

FAULTS = {
    "429": "429:ra=2",
    "500": "500",
    "hang": "hang",
    "cut": "cut:after=3",
    "drip": "drip:ms=1500,bytes=16",
}
FIRST_OUTCOME = {
    "429": (Outcome.UPSTREAM_ERROR, 429),
    "500": (Outcome.UPSTREAM_ERROR, 500),
    "hang": (Outcome.TIMEOUT, None),
}
# (tenant, fault, stream) -> requests. "acme" falls back; "solo" has auto-failover off.
PLAN = {
    ("acme", "429", False): 40,
    ("acme", "500", False): 40,
    ("acme", "hang", False): 24,
    ("acme", "429", True): 16,
    ("acme", "500", True): 16,
    ("acme", "cut", True): 32,
    ("acme", "drip", True): 16,
    ("acme", "drip", False): 16,
    ("solo", "500", False): 16,
    ("solo", "hang", False): 8,
    ("solo", "429", True): 8,
    ("solo", "cut", True): 8,
}


def faulty_world(world):
    """Per fault, a model `via-<fault>` served first by a provider with that fault, then by a
    healthy one; the faulty providers are both tenants' preferred ones, so they go first."""
    faulty = {}
    for name, spec in FAULTS.items():
        provider = add_provider(world.sim.url, f"faulty-{name}", path=f"/fault/{spec}")
        platform_key(provider, f"sim-platform-faulty-{name}")
        CatalogModelFactory(provider=provider, model_id="sim-balanced", name=f"via-{name}")
        CatalogModelFactory(provider=world.openai, model_id=f"sim-via-{name}", name=f"via-{name}")
        faulty[name] = provider
    solo = TenantFactory(slug="solo", plan=world.tenant.plan)
    CreditLedgerEntry.objects.create(tenant=solo, kind="grant", amount_usd=Decimal(100))
    for tenant, failover in ((world.tenant, True), (solo, False)):
        settings = LLMSettings.objects.create(tenant=tenant, auto_failover=failover)
        settings.preferred_providers.set(faulty.values())
    keys = {"acme": world.api_key, "solo": TenantAPIKeyFactory(tenant=solo).raw_key}
    unthrottled(world)  # syncs the gateway too
    return faulty, solo, keys


def jobs(keys: dict[str, str]) -> list[Job]:
    out = []
    for (tenant, fault, stream), count in PLAN.items():
        body = {
            "model": f"via-{fault}",
            "messages": [{"role": "user", "content": f"fault {fault}"}],
            "stream": stream,
        }
        out += [Job(keys[tenant], body, kind=f"{tenant}/{fault}/{stream}")] * count
    random.Random(7).shuffle(out)
    return out


def test_upstream_faults_fall_back_or_fail_as_documented_and_every_attempt_is_recorded(
    world, monkeypatch
):
    faulty, solo, keys = faulty_world(world)
    state = world.gateway.state
    # A hang is a timeout after half a second; faulty providers never cool down, so every
    # request meets its fault (cool-downs have their own tests).
    monkeypatch.setattr(state, "timeout", aiohttp.ClientTimeout(total=10, connect=1, sock_read=0.5))
    monkeypatch.setattr(state.health, "failures", 10**9)

    load = Load(world.gateway.url, concurrency=16)
    answers = asyncio.run(load.run(jobs(keys)))
    world.gateway.flush_usage()

    by_kind: dict[str, Counter] = {}
    for answer in answers:
        by_kind.setdefault(answer.job.kind, Counter())[
            (answer.status, answer.code, answer.attempts, answer.ok)
        ] += 1
    expected = {}
    for (tenant, fault, stream), count in PLAN.items():
        kind = f"{tenant}/{fault}/{stream}"
        if fault == "drip":  # slow but whole: the faulty provider's own answer
            expected[kind] = {(200, None, 1, True): count}
        elif fault == "cut":  # bytes already sent: no fallback, the SSE error event instead
            expected[kind] = {(200, "upstream_stream_error", 1, False): count}
        elif tenant == "acme":  # the fallback answers
            expected[kind] = {(200, None, 2, True): count}
        elif fault == "hang":
            expected[kind] = {(504, "upstream_timeout", None, False): count}
        else:
            expected[kind] = {(502, "all_providers_failed", None, False): count}
    assert {k: dict(v) for k, v in by_kind.items()} == expected, tally(answers)
    assert len(answers) == sum(PLAN.values())

    rows = usage_rows(tenant__in=[world.tenant, solo])
    assert duplicates(rows) == []
    recorded = check_recorded(answers, rows)
    assert recorded["problems"] == []
    assert recorded["counts"]["ok"] == sum(
        n for (t, f, _), n in PLAN.items() if f == "drip" or (t == "acme" and f != "cut")
    )

    # Each answered request's rows: the fault's outcome first, then the fallback's success.
    providers = {p.pk: name for name, p in faulty.items()} | {world.openai.pk: "healthy"}
    seen = Counter()
    for answer in answers:
        if answer.request_id is None:
            continue
        group = rows[answer.request_id]
        fault = answer.job.kind.split("/")[1]
        if fault in FIRST_OUTCOME and answer.ok:
            first, second = group
            assert (first.outcome, first.http_status) == FIRST_OUTCOME[fault]
            assert providers[first.provider_id] == fault
            assert (second.outcome, providers[second.provider_id]) == (Outcome.SUCCESS, "healthy")
        elif fault in FIRST_OUTCOME:  # auto-failover off: the one failed attempt
            [only] = group
            assert (only.outcome, only.http_status) == FIRST_OUTCOME[fault]
            assert providers[only.provider_id] == fault
        elif fault == "cut":
            assert [(r.outcome, providers[r.provider_id]) for r in group] == [
                (Outcome.STREAM_ERROR, "cut")
            ]
        else:
            assert [(r.outcome, providers[r.provider_id]) for r in group] == [
                (Outcome.SUCCESS, "drip")
            ]
        if answer.ok and not answer.is_stream:  # the row holds the upstream's own count
            usage = answer.json()["usage"]
            assert group[-1].output_tokens == usage["completion_tokens"]
        seen[fault] += 1

    # Requests refused with 502 / 504 carry their request id too: one failed attempt each.
    refused = [a for a in answers if a.status in (502, 504)]
    failed_groups = [rows[a.request_id] for a in refused]
    assert len(failed_groups) == len(refused) == 32
    assert Counter((g[0].outcome, providers[g[0].provider_id]) for g in failed_groups) == {
        (Outcome.UPSTREAM_ERROR, "500"): 16,
        (Outcome.TIMEOUT, "hang"): 8,
        (Outcome.UPSTREAM_ERROR, "429"): 8,
    }
    assert all(len(g) == 1 for g in failed_groups)

    # Every request the simulator received is one row, per provider: no attempt unrecorded.
    sim_seen = Counter(entry["fault"] or "healthy" for entry in world.sim.log)
    rows_seen = Counter(providers[r.provider_id] for group in rows.values() for r in group)
    assert sim_seen == {FAULTS.get(name, name): n for name, n in rows_seen.items()}
    assert sum(rows_seen.values()) == sum(len(g) for g in rows.values())
