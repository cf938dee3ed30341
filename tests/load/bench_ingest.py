"""`uv run python -m tests.load.bench_ingest --records 200000`: how fast usage is ingested.

Run on demand, not in the suite. Times the two halves of the gateway's usage path on this
machine, outside any HTTP: the journal append each request pays before its response ends
(usage.journal: one encoded line, one write), and the batch writer's insert
(usage.recording.write_usage: end users resolved, COPY of the rows, ledger debits, last-used
stamps, in one transaction) at the gateway's batch sizes. It (re)creates a scratch
PostgreSQL database (default `sy_ingest_bench`) and drops it at the end.

    --records N    entries to write (default 200,000)
    --database DB  the scratch database (default sy_ingest_bench)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path


def out(line: str) -> None:
    sys.stdout.write(line + "\n")


def configure(database: str) -> None:
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{database}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only-not-secret")
    os.environ.setdefault("SWITCHYARD_DEV_KEY", "true")
    os.environ["DEBUG"] = "false"


def recreate(database: str) -> None:
    import psycopg

    with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{database}"')
        c.execute(f'CREATE DATABASE "{database}"')


def drop(database: str) -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{database}"')


def entries(n: int, tenant_id: int, api_key_id: int):
    from usage.choices import KeySource, Outcome
    from usage.entries import UsageEntry

    now = datetime.now(UTC)
    return [
        UsageEntry(
            created_at=now,
            tenant_id=tenant_id,
            request_id=uuid.uuid4(),
            attempt=1,
            outcome=Outcome.SUCCESS,
            end_user_external_id=f"user-{i % 200}",
            api_key_id=api_key_id,
            provider_id=1,
            provider_key_id=None,
            model_id=1,
            key_source=KeySource.PLATFORM,
            power_level=1,
            http_status=200,
            input_tokens=120 + i % 50,
            output_tokens=40 + i % 30,
            cost_usd=Decimal("0.00012345"),
            credit_debit_usd=Decimal("0.00012345"),
            latency_ms=300 + i % 100,
        )
        for i in range(n)
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--database", default="sy_ingest_bench")
    options = parser.parse_args(argv)
    configure(options.database)
    recreate(options.database)

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from tenants.models import Plan
    from tenants.services import create_api_key, create_tenant
    from usage import journal
    from usage.models import UsageRecord
    from usage.recording import write_usage

    try:
        tenant = create_tenant(name="Ingest", slug="ingest", plan=Plan.objects.first())
        key = create_api_key(tenant=tenant, name="bench")[0]
        batch = entries(options.records, tenant.id, key.id)

        with tempfile.TemporaryDirectory() as folder:
            log = journal.Journal(Path(folder))
            started = time.perf_counter()
            for e in batch:
                log.append(e)
            journal_s = time.perf_counter() - started
            log.close(delete=True)

        rows = [
            "| step | batch | entries/s | µs per entry |",
            "|---|---|---|---|",
            f"| journal append (per request, before the response ends) | 1 | "
            f"{options.records / journal_s:,.0f} | {1e6 * journal_s / options.records:.1f} |",
        ]
        done = 0
        for size in (100, 500, 2000):
            part = batch[done : done + options.records // 3]
            done += len(part)
            started = time.perf_counter()
            for i in range(0, len(part), size):
                write_usage(part[i : i + size])
            took = time.perf_counter() - started
            rows.append(
                f"| write_usage (COPY, ledger, stamps; one transaction a batch) | {size:,} | "
                f"{len(part) / took:,.0f} | {1e6 * took / len(part):.1f} |"
            )
        assert UsageRecord.objects.count() == done
        out(f"### Usage ingestion ({options.records:,} entries, PostgreSQL on 127.0.0.1)\n")
        out("\n".join(rows))
    finally:
        drop(options.database)


if __name__ == "__main__":
    main()
