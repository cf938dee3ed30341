"""The usage journal: what a killed gateway process answered is recorded, exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from usage import journal
from usage.choices import KeySource, Outcome
from usage.entries import UsageEntry
from usage.models import UsageRecord
from usage.recording import write_usage

BODY = {"model": "sim-eco", "messages": [{"role": "user", "content": "Hello"}]}


def entry(tenant_id: int, **fields) -> UsageEntry:
    values = {
        "created_at": datetime.now(UTC),
        "tenant_id": tenant_id,
        "request_id": uuid.uuid4(),
        "attempt": 1,
        "outcome": Outcome.SUCCESS,
        **fields,
    }
    return UsageEntry(**values)


def test_an_entry_survives_the_line_format_with_every_field():
    original = UsageEntry(
        created_at=datetime(2026, 11, 23, 16, 1, 2, 345678, tzinfo=UTC),
        tenant_id=7,
        request_id=uuid.uuid4(),
        attempt=2,
        outcome=Outcome.STREAM_ERROR,
        end_user_id=None,
        end_user_external_id="user-ü-42",
        api_key_id=3,
        provider_id=4,
        provider_key_id=5,
        model_id=6,
        key_source=KeySource.PLATFORM,
        power_level=2,
        http_status=502,
        is_stream=True,
        is_estimated=True,
        input_tokens=100,
        cached_tokens=20,
        output_tokens=7,
        cost_usd=Decimal("0.00012345"),
        credit_debit_usd=Decimal("0.00000001"),
        latency_ms=1234,
        ttft_ms=56,
        error='upstream said "no"\nbye',
    )
    line = journal.encode(original)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert journal.decode(line) == original


def test_segments_are_deleted_only_when_released_and_owned_ones_are_not_orphans(tmp_path):
    owner = journal.Journal(tmp_path)
    owner.append(entry(1))
    owner.rotate()
    owner.append(entry(1))
    assert len(list(tmp_path.iterdir())) == 2
    # a live owner holds its locks: nothing to take over, before or after release
    assert list(journal.orphans(tmp_path)) == []
    owner.release()
    assert [p.name for p in tmp_path.iterdir()] == [owner.path.name]
    owner.close(delete=True)  # a graceful stop with everything written
    assert list(tmp_path.iterdir()) == []


def test_close_without_delete_leaves_unwritten_segments_for_a_replay(tmp_path):
    owner = journal.Journal(tmp_path)
    owner.append(entry(1))
    owner.close(delete=False)
    left = list(journal.orphans(tmp_path))
    try:
        assert len(left) == 1
    finally:
        for _, fd in left:
            os.close(fd)


@pytest.mark.django_db(transaction=True)
def test_replay_inserts_only_what_the_database_lacks_and_deletes_the_segment(tmp_path, tenant):
    entries = [entry(tenant.id, cost_usd=Decimal("0.001") * n) for n in range(1, 6)]
    write_usage(entries[:2])  # written before the crash
    dead = journal.Journal(tmp_path)
    for e in entries:
        dead.append(e)
    dead.close(delete=False)

    assert journal.replay(tmp_path) == 3
    assert not list(tmp_path.iterdir())
    assert UsageRecord.objects.filter(tenant=tenant).count() == 5
    assert sorted(UsageRecord.objects.values_list("cost_usd", flat=True)) == [
        Decimal("0.001") * n for n in range(1, 6)
    ]
    assert journal.replay(tmp_path) == 0


def test_a_truncated_last_line_is_skipped_not_fatal(tmp_path, db, tenant):
    dead = journal.Journal(tmp_path)
    dead.append(entry(tenant.id))
    os.write(dead.fd, b'["2026-11-23T16:00:00+00:00", 1')  # killed mid-write
    dead.close(delete=False)
    assert journal.replay(tmp_path) == 1


def records_for(request_ids: list[str]) -> int:
    return UsageRecord.objects.filter(request_id__in=[uuid.UUID(r) for r in request_ids]).count()


def test_a_gateway_killed_with_sigkill_loses_no_answered_request(world, gateway_process):
    # A flush interval far longer than the test: nothing reaches the database before the kill.
    doomed = gateway_process(SWITCHYARD_USAGE_FLUSH_SECONDS="3600")
    headers = {"Authorization": f"Bearer {world.api_key}"}
    answered = []
    with httpx.Client(base_url=doomed.url, headers=headers, timeout=10) as client:
        for _ in range(40):
            response = client.post("/v1/chat/completions", json=BODY)
            assert response.status_code == 200, response.text
            answered.append(response.headers["x-request-id"])
    doomed.process.send_signal(signal.SIGKILL)
    doomed.process.wait(10)
    assert records_for(answered) == 0  # all of it was still in the dead process's memory

    gateway_process()  # a new process takes the journal over at start-up
    deadline = time.monotonic() + 15
    while records_for(answered) < len(answered) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert records_for(answered) == len(answered)
    time.sleep(1)  # and nothing is written twice (a second replay, the live writer)
    assert records_for(answered) == len(answered)
    assert UsageRecord.objects.filter(tenant=world.tenant).count() == len(answered)


@pytest.mark.django_db(transaction=True)
def test_an_entry_the_database_refuses_does_not_hold_back_the_others(tenant):
    from routing.gateway.usage_sink import UsageSink

    good = [entry(tenant.id) for _ in range(3)]
    poison = entry(tenant.id, end_user_external_id="eve\x00")  # PostgreSQL refuses NUL

    async def go() -> UsageSink:
        sink = UsageSink(flush_seconds=60, batch_size=100)
        for e in (good[0], poison, *good[1:]):
            sink.add(e)
        await sink.flush()
        later = entry(tenant.id)
        sink.add(later)
        await sink.flush()  # the writer is not stuck on the refused batch
        await sink.close()
        return sink, later

    sink, later = asyncio.run(go())
    written = set(UsageRecord.objects.values_list("request_id", flat=True))
    assert written == {e.request_id for e in (*good, later)}
    assert (sink.dropped, sink.pending) == (1, [])


@pytest.mark.django_db(transaction=True)
def test_a_replayed_entry_the_database_refuses_is_skipped_and_the_segment_goes(tmp_path, tenant):
    good = [entry(tenant.id) for _ in range(2)]
    dead = journal.Journal(tmp_path)
    for e in (good[0], entry(tenant.id, end_user_external_id="eve\x00"), good[1]):
        dead.append(e)
    dead.close(delete=False)

    assert journal.replay(tmp_path) == 2
    assert set(UsageRecord.objects.values_list("request_id", flat=True)) == {
        e.request_id for e in good
    }
    assert not list(tmp_path.iterdir())  # not retried forever


def test_an_unreadable_line_is_skipped_and_the_rest_replayed(tmp_path, db, tenant):
    dead = journal.Journal(tmp_path)
    dead.append(entry(tenant.id))
    os.write(dead.fd, b'["not", "an", "entry"]\n')  # a line from another version, say
    dead.append(entry(tenant.id))
    dead.close(delete=False)
    assert journal.replay(tmp_path) == 2
    assert not list(tmp_path.iterdir())
