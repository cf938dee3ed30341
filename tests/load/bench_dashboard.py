"""`uv run python -m tests.load.bench_dashboard --records 1000000`: the usage pages on a tenant
with a million (or ten million) usage records, timed server-side.

Run on demand, not in the suite. It (re)creates a scratch PostgreSQL database (default
`sy_dash_bench`), migrates it, makes one busy tenant (end users, API keys, four providers, a
dozen models) plus a smaller neighbour, writes the records with INSERT ... SELECT over
generate_series, a million per statement (in time order, as the gateway writes them; 10M
take a few minutes), runs the rollup service (usage.rollups.roll_up_usage), then times each
page with Django's test Client: the dashboard over 24 hours, 7 and 30 days for the whole
tenant, one end user, one API key and one provider, a few more periods and filters, a
member's view, and the spending page with the gateway's counters absent (cold) and present
(warm). Each figure is the median of 5 requests after one warm-up; the target is 300 ms.
Prints a Markdown table.

    --records N [N ...]  records of the busy tenant (default 1,000,000; its neighbour gets
                   5 %); several sizes run one after the other, each in DB_<size>
                   (`--records 1000000 10000000`: sy_dash_bench_1m, sy_dash_bench_10m)
    --days D       spread over the last D days (default 30)
    --end-users U  distinct end users of the busy tenant (default 400)
    --database DB  the scratch database (default sy_dash_bench; dropped and created)
    --reuse        keep the database if it already holds the records (skip generation)
    --drop         drop the database when done (10M records take ~3.5 GB)

Set REDIS_URL to time against a real Redis (the spend counters the spending page reads);
without it they live in an in-process fakeredis.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

DAY = timedelta(days=1)
TARGET_MS = 300
RUNS = 5
PROVIDERS = ("OpenAI", "Anthropic", "Groq", "OpenRouter")
MODELS_PER_PROVIDER = 3
API_KEYS = 6
ROLLUP_TABLES = ("usage_usagerollup", "usage_apikeyusagerollup", "usage_tenantusagerollup")
# Records per INSERT: bounds each statement's memory and WAL, and shows progress.
CHUNK = 1_000_000


def out(line: str) -> None:
    sys.stdout.write(line + "\n")


def configure(database: str) -> None:
    """Point Django at the scratch database before it starts; production-like settings."""
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{database}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only-not-secret")
    os.environ.setdefault("SWITCHYARD_DEV_KEY", "true")
    os.environ.setdefault("SWITCHYARD_TLS", "false")
    os.environ["DEBUG"] = "false"  # DEBUG keeps every query in memory: not what production runs


def recreate_database(database: str, *, reuse: bool) -> bool:
    """Create the scratch database (dropping an old one unless `reuse`); True if it existed."""
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as admin:
        exists = admin.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [database]
        ).fetchone()
        if exists and reuse:
            return True
        if exists:
            admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{database}"')
    return False


def build_world(end_user_count: int) -> dict:
    """Plans, a busy tenant and a neighbour, people, keys, providers and catalog models."""
    from django.contrib.auth import get_user_model
    from django.test.utils import override_settings

    from providers.choices import ProviderKind, WireProtocol
    from providers.models import Provider
    from routing.models import CatalogModel
    from tenants.models import EndUser, Membership, Plan, Tenant, TenantAPIKey

    User = get_user_model()
    plan = Plan.objects.get(slug="professional")
    busy = Tenant.objects.create(name="Busy Corp", slug="busy", plan=plan)
    neighbour = Tenant.objects.create(name="Neighbour", slug="neighbour", plan=plan)
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        owner = User.objects.create_user("bench-owner", password="x")
        member = User.objects.create_user("bench-member", password="x")
    Membership.objects.create(tenant=busy, user=owner, role="owner")
    Membership.objects.create(tenant=busy, user=member, role="member")
    end_users = EndUser.objects.bulk_create(
        EndUser(tenant=busy, external_id=f"customer-{n:05d}") for n in range(end_user_count)
    )
    # The member is the third busiest end user (the generator favours low indexes).
    end_users[2].user = member
    end_users[2].save(update_fields=["user"])
    keys = []
    for n in range(API_KEYS):
        key = TenantAPIKey(tenant=busy, name=f"service {n}")
        key.set_key(TenantAPIKey.generate())
        key.save()
        keys.append(key)
    neighbour_user = EndUser.objects.create(tenant=neighbour, external_id="n-1")
    neighbour_key = TenantAPIKey(tenant=neighbour, name="neighbour service")
    neighbour_key.set_key(TenantAPIKey.generate())
    neighbour_key.save()
    providers, models, prices = [], [], []
    for p, name in enumerate(PROVIDERS):
        provider = Provider.objects.create(
            name=name,
            slug=name.lower(),
            kind=ProviderKind.SIMULATOR,
            protocol=WireProtocol.OPENAI,
            base_url="http://127.0.0.1:9100/v1",
        )
        for m in range(MODELS_PER_PROVIDER):
            price = Decimal(p + 1) * Decimal(m + 1) / 4
            model = CatalogModel.objects.create(
                provider=provider,
                model_id=f"{name.lower()}-model-{m}",
                name=f"{name.lower()}/model-{m}",
                input_price_per_mtok=price,
                output_price_per_mtok=price * 4,
                cached_input_price_per_mtok=price / 2,
            )
            providers.append(provider.pk)
            models.append(model.pk)
            prices.append(float(price))
    return {
        "busy": busy,
        "neighbour": neighbour,
        "owner": owner,
        "member": member,
        "end_users": [u.pk for u in end_users],
        "heavy_user": end_users[0],
        "keys": [k.pk for k in keys],
        "neighbour_user": neighbour_user.pk,
        "neighbour_key": neighbour_key.pk,
        "providers": providers,
        "models": models,
        "prices": prices,
    }


# One statement per tenant, in PostgreSQL: end users and models are skewed (a few do most of
# the traffic, as in real tenants), an end user always calls through the same API key, 3 % of
# attempts fail, latencies spread from ~100 ms to ~10 s, and 15 % of records have no end user.
GENERATE = """
INSERT INTO usage_usagerecord (
    created_at, tenant_id, end_user_id, api_key_id, request_id, attempt, provider_id,
    model_id, key_source, power_level, outcome, http_status, is_stream, is_estimated,
    input_tokens, cached_tokens, output_tokens, cost_usd, latency_ms, ttft_ms, error
)
SELECT created_at, %(tenant)s, end_user_id, api_key_id, gen_random_uuid(), 1, provider_id,
       model_id, 1, 2, outcome, CASE WHEN outcome = 1 THEN 200 ELSE 502 END, is_stream, FALSE,
       input_tokens, cached_tokens, output_tokens,
       round(((input_tokens * price + cached_tokens * price / 2 + output_tokens * price * 4)
              / 1000000)::numeric, 8),
       latency_ms, NULL, CASE WHEN outcome = 1 THEN '' ELSE 'upstream 502' END
FROM (
    SELECT %(now)s - (%(days)s * interval '1 day') * (1 - n::float8 / %(count)s) AS created_at,
           CASE WHEN u.roll < 0.15 THEN NULL
                ELSE (%(end_users)s::bigint[])[1 + u.pick] END AS end_user_id,
           (%(keys)s::bigint[])[1 + (u.pick %% %(key_count)s)] AS api_key_id,
           (%(providers)s::int[])[1 + m.pick] AS provider_id,
           (%(models)s::int[])[1 + m.pick] AS model_id,
           (%(prices)s::float8[])[1 + m.pick] AS price,
           CASE WHEN random() < 0.03 THEN 2 ELSE 1 END AS outcome,
           random() < 0.3 AS is_stream,
           (200 + random() * 2000)::int AS input_tokens,
           (CASE WHEN random() < 0.2 THEN random() * 1000 ELSE 0 END)::int AS cached_tokens,
           (50 + random() * 600)::int AS output_tokens,
           (80 * exp(random() * random() * 5))::int AS latency_ms
    FROM generate_series(%(first)s, %(last)s) AS n
    CROSS JOIN LATERAL (
        SELECT random() AS roll,
               floor(power(random(), 3) * %(end_user_count)s)::int AS pick
        WHERE n > 0
    ) AS u
    CROSS JOIN LATERAL (
        SELECT floor(power(random(), 2) * %(model_count)s)::int AS pick WHERE n > 0
    ) AS m
) AS generated
"""


def generate(world: dict, *, records: int, days: int) -> float:
    """Write the records, CHUNK per statement; returns seconds taken."""
    from django.db import connection
    from django.utils import timezone

    started = time.perf_counter()
    now = timezone.now()  # one clock for every chunk: the chunks join up in time
    with connection.cursor() as cursor:
        for tenant, count, end_users, keys in (
            (world["busy"].pk, records, world["end_users"], world["keys"]),
            (
                world["neighbour"].pk,
                max(records // 20, 1),
                [world["neighbour_user"]],
                [world["neighbour_key"]],
            ),
        ):
            for first in range(1, count + 1, CHUNK):
                cursor.execute(
                    GENERATE,
                    {
                        "now": now,
                        "tenant": tenant,
                        "first": first,
                        "last": min(first + CHUNK - 1, count),
                        "count": count,
                        "days": days,
                        "end_users": end_users,
                        "end_user_count": len(end_users),
                        "keys": keys,
                        "key_count": len(keys),
                        "providers": world["providers"],
                        "models": world["models"],
                        "model_count": len(world["models"]),
                        "prices": world["prices"],
                    },
                )
                progress(f"tenant {tenant}: {min(first + CHUNK - 1, count):,} / {count:,}")
        cursor.execute("ANALYZE usage_usagerecord")
    return time.perf_counter() - started


def progress(line: str) -> None:
    sys.stderr.write(f"{time.strftime('%H:%M:%S')} {line}\n")


def roll_up() -> float:
    from django.utils import timezone

    from usage.rollups import roll_up_usage

    started = time.perf_counter()
    progress("rolling up")
    run = roll_up_usage(now=timezone.now(), max_seconds=3600)
    if not run.caught_up:
        sys.exit("The rollup did not catch up.")
    analyze()
    return time.perf_counter() - started


def analyze() -> None:
    """Fresh planner statistics, as autovacuum keeps them on a live database."""
    from django.db import connection

    with connection.cursor() as cursor:
        for table in ROLLUP_TABLES:
            cursor.execute(f"ANALYZE {table}")


def sizes() -> dict[str, str]:
    from django.db import connection

    with connection.cursor() as cursor:
        # reltuples: ANALYZE's count (the statistics collector's lags behind bulk inserts).
        cursor.execute(
            "SELECT relname, reltuples::bigint, pg_size_pretty(pg_total_relation_size(oid)) "
            "FROM pg_class WHERE relname = ANY(%s) ORDER BY relname DESC",
            [["usage_usagerecord", *ROLLUP_TABLES]],
        )
        return {name: f"~{rows:,} rows, {size}" for name, rows, size in cursor.fetchall()}


def new_rollup_run() -> None:
    """What a rollup run does to the dashboard's cache: its state row's time moves on."""
    from django.utils import timezone

    from usage.models import UsageRollupState

    UsageRollupState.objects.update(updated_at=timezone.now())


@dataclass(frozen=True)
class Timing:
    """Medians (and the wall range) of RUNS requests, ms: wall clock, this process's CPU (the
    Django side: Python, templates, drivers) and time inside database calls. On a busy
    machine wall > cpu + db: the rest is waiting for a core."""

    wall: float
    low: float
    high: float
    cpu: float
    db: float
    queries: int


def time_page(client, url: str, params: dict, *, cold: bool) -> Timing:
    """RUNS requests after a warm-up. `cold`: each request is the first after a rollup run
    (the dashboard's cache misses)."""
    from django.db import connection

    response = client.get(url, params)
    if response.status_code != 200:
        sys.exit(f"{url} {params}: HTTP {response.status_code}")
    walls, cpus, dbs = [], [], []
    queries = 0
    for _ in range(RUNS):
        if cold:
            new_rollup_run()
        queries, in_db = 0, 0.0

        def measure(execute, sql, params, many, context):
            nonlocal queries, in_db
            queries += 1
            started = time.perf_counter()
            try:
                return execute(sql, params, many, context)
            finally:
                in_db += time.perf_counter() - started

        with connection.execute_wrapper(measure):
            started, cpu = time.perf_counter(), time.process_time()
            client.get(url, params)
            walls.append((time.perf_counter() - started) * 1000)
            cpus.append((time.process_time() - cpu) * 1000)
            dbs.append(in_db * 1000)
    median = statistics.median
    return Timing(median(walls), min(walls), max(walls), median(cpus), median(dbs), queries)


def _spend_keys(busy, external_ids) -> list[str]:
    from django.utils import timezone

    from usage import counters
    from usage.periods import period_bounds

    start, _ = period_bounds(busy.billing_day, timezone.now())
    keys = [counters.budget_keys("t", str(busy.pk), start.date())[0]]
    keys += [
        counters.budget_keys("u", f"{busy.pk}:{external_id}", start.date())[0]
        for external_id in external_ids
    ]
    return keys


def forget_counters(busy) -> None:
    """Drop the tenant's spend counters (only those): the pages then read the database."""
    from tenants.models import EndUser
    from usage import counters

    external_ids = EndUser.objects.filter(tenant=busy).values_list("external_id", flat=True)
    counters.sync_client().delete(*_spend_keys(busy, list(external_ids)))


def warm_counters(busy) -> None:
    """Seed the tenant's and its end users' spend counters as the gateway keeps them."""
    from django.utils import timezone

    from tenants.models import EndUser
    from usage import counters, selectors
    from usage.limiter import to_units
    from usage.periods import period_bounds

    start, end = period_bounds(busy.billing_day, timezone.now())
    spend = selectors.period_spend(tenant_id=busy.pk, start=start, end=end)
    users = dict(
        EndUser.objects.filter(pk__in=list(spend.by_end_user)).values_list("pk", "external_id")
    )
    keys = _spend_keys(busy, [users[pk] for pk in spend.by_end_user])
    values = [spend.total_usd, *spend.by_end_user.values()]
    counters.sync_client().mset(
        {key: to_units(value) for key, value in zip(keys, values, strict=True)}
    )


def make_caps(world: dict) -> None:
    from usage.services import grant_credits, set_spending_cap

    busy, owner = world["busy"], world["owner"]
    set_spending_cap(
        tenant=busy, scope="tenant", amount_usd=Decimal(50000), mode="soft", actor=owner
    )
    set_spending_cap(
        tenant=busy, scope="each_user", amount_usd=Decimal(500), mode="hard", actor=owner
    )
    from tenants.models import EndUser

    for user in EndUser.objects.filter(tenant=busy).order_by("pk")[:40]:
        set_spending_cap(
            tenant=busy,
            scope="user",
            end_user=user,
            amount_usd=Decimal(900),
            mode="hard",
            actor=owner,
        )
    for n in range(60):
        grant_credits(tenant=busy, amount_usd=Decimal(100), reason=f"top-up {n}", actor=owner)


def existing_world() -> dict | None:
    from django.contrib.auth import get_user_model

    from tenants.models import EndUser, Tenant

    busy = Tenant.objects.filter(slug="busy").first()
    if busy is None:
        return None
    User = get_user_model()
    return {
        "busy": busy,
        "owner": User.objects.get(username="bench-owner"),
        "member": User.objects.get(username="bench-member"),
        "heavy_user": EndUser.objects.filter(tenant=busy).order_by("pk").first(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--end-users", type=int, default=400)
    parser.add_argument("--database", default="sy_dash_bench")
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--drop", action="store_true")
    args = parser.parse_args()
    if len(args.records) > 1:
        each_size(args)
        return
    (records,) = args.records

    configure(args.database)
    existed = recreate_database(args.database, reuse=args.reuse)
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client
    from django.urls import reverse
    from django.utils import timezone

    from providers.models import Provider
    from routing.models import CatalogModel

    call_command("migrate", interactive=False, verbosity=0)
    world = existing_world() if existed else None
    notes = []
    if world is None:
        world = build_world(args.end_users)
        seconds = generate(world, records=records, days=args.days)
        notes.append(f"generated {records:,} records (+5 % for a neighbour) in {seconds:.0f} s")
        seconds = roll_up()
        notes.append(f"rolled up in {seconds:.0f} s")
        make_caps(world)
    else:
        analyze()  # a migration may just have filled a table
        notes.append("reused the existing records and rollups")
    for table, text in sizes().items():
        notes.append(f"{table}: {text}")

    dashboard, spending = reverse("usage:dashboard"), reverse("usage:spending")
    owner, member = Client(), Client()
    owner.force_login(world["owner"])
    member.force_login(world["member"])
    today = timezone.now().date()
    provider = Provider.objects.get(slug="openai").pk
    model = CatalogModel.objects.filter(provider_id=provider).order_by("pk").first().pk
    key = world["busy"].api_keys.order_by("pk").first().pk
    heavy = world["heavy_user"].external_id
    filters = {  # label -> GET parameters narrowing the view
        "": {},
        "one end user": {"end_user": heavy},
        "one API key": {"api_key": key},
        "one provider": {"provider": provider},
    }
    views = [  # (as whom, what, GET parameters)
        ("owner", f"{period}{', ' if label else ''}{label}", {"period": period, **narrowed})
        for period in ("24h", "7d", "30d")
        for label, narrowed in filters.items()
    ]
    views += [
        ("owner", "30d, one model", {"period": "30d", "model": model}),
        ("owner", "billing month", {"period": "month"}),
        ("owner", "custom 90 days", {"period": "custom", "start": today - 89 * DAY, "end": today}),
        ("member", "30d (own usage)", {"period": "30d"}),
    ]
    clients = {"owner": owner, "member": member}
    rows = []
    load_before = os.getloadavg()[0]
    for who, label, params in views:
        cold = time_page(clients[who], dashboard, params, cold=True)
        warm = time_page(clients[who], dashboard, params, cold=False)
        rows.append(("dashboard", who, label, cold, warm))
    forget_counters(world["busy"])
    cold_spending = {who: time_page(c, spending, {}, cold=False) for who, c in clients.items()}
    warm_counters(world["busy"])
    for who, client in clients.items():
        warm = time_page(client, spending, {}, cold=False)
        rows.append(("spending", who, "", cold_spending[who], warm))
    notes.append(
        f"load average {load_before:.1f} before the timings, {os.getloadavg()[0]:.1f} after "
        f"({os.cpu_count()} CPUs)"
    )

    out(f"\n## Usage pages, {records:,} records of one tenant over {args.days} days\n")
    for note in notes:
        out(f"- {note}")
    out(
        "\nCold: the first view after a rollup run (the dashboard's cache misses); for the "
        "spending page, without the gateway's spend counters in Redis. Warm: the views after "
        "it; for the spending page, with the counters. Median of 5 (min-max), ms. cpu / db: "
        "the cold view's medians of this process's CPU time and of time inside database "
        "calls; on a busy machine the rest of the wall time is waiting for a core.\n"
    )
    out(f"| page | as | filter | cold | cold: cpu / db | warm | queries | cold ≤ {TARGET_MS} ms |")
    out("|---|---|---|---:|---:|---:|---:|---|")
    for page, who, label, cold, warm in rows:
        verdict = "yes" if cold.wall <= TARGET_MS else "**no**"
        out(
            f"| {page} | {who} | {label} | {span(cold)} | {cold.cpu:.0f} / {cold.db:.0f} "
            f"| {span(warm)} | {cold.queries} | {verdict} |"
        )

    if args.drop:
        drop_database(args.database)


def each_size(args: argparse.Namespace) -> None:
    """One run per --records value, each in its own process and database (Django settles on
    one database per process): sy_dash_bench_1m, sy_dash_bench_10m, ..."""
    import subprocess

    for records in args.records:
        command = [sys.executable, "-m", "tests.load.bench_dashboard", "--records", str(records)]
        command += ["--days", str(args.days), "--end-users", str(args.end_users)]
        command += ["--database", f"{args.database}_{short_size(records)}"]
        command += ["--reuse"] * args.reuse + ["--drop"] * args.drop
        subprocess.run(command, check=True)  # noqa: S603 - this module, our arguments


def short_size(records: int) -> str:
    for size, suffix in ((1_000_000, "m"), (1_000, "k")):
        if records >= size and records % size == 0:
            return f"{records // size}{suffix}"
    return str(records)


def drop_database(database: str) -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
    progress(f"dropped {database}")


def span(timing: Timing) -> str:
    return f"{timing.wall:.0f} ({timing.low:.0f}-{timing.high:.0f})"


if __name__ == "__main__":
    main()
