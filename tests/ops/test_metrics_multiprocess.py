"""/metrics adds up every uvicorn worker, whichever worker answers the scrape.

The server is started as Procfile starts production (config/serve.py, two workers); requests
arrive concurrently on fresh connections so both workers take some, which each worker's own
file in the metrics directory shows.
"""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from prometheus_client.mmap_dict import MmapedDict

from tests.ops.scrape import scrape, total

BODY = {"model": "sim-eco", "messages": [{"role": "user", "content": "which worker?"}]}
READYZ_COUNT = "django_http_responses_total_by_status_view_method_total"


def complete(server, world, n: int) -> list[int]:
    def one(_: int) -> int:
        return httpx.post(
            f"{server.url}/v1/chat/completions", headers=world.headers(), json=BODY, timeout=30
        ).status_code

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(n)))


def requests_per_worker(metrics_dir: str) -> dict[int, float]:
    """llm_requests_total by the pid whose file holds it, read from the files themselves."""
    counts: dict[int, float] = {}
    for path in Path(metrics_dir).glob("counter_*.db"):
        pid = int(path.stem.split("_")[1])
        for key, value, _, _ in MmapedDict.read_all_values_from_file(str(path)):
            if json.loads(key)[1] == "llm_requests_total":
                counts[pid] = counts.get(pid, 0.0) + value
    return counts


def settled(server, expected: float) -> None:
    """Wait for the last responses' counts (they land just after the response is sent)."""
    deadline = time.monotonic() + 5
    while total(scrape(server.url)[1], "llm_requests_total") != expected:
        assert time.monotonic() < deadline, "the counts never added up"
        time.sleep(0.05)


def spread(server, world, workers: set[int] | int) -> int:
    """Send completions in batches until every worker (a count, or these pids) answered some;
    the number sent."""
    sent = 0
    deadline = time.monotonic() + 60
    while True:
        assert complete(server, world, 8) == [200] * 8
        sent += 8
        answered = {pid for pid, c in requests_per_worker(server.metrics_dir).items() if c > 0}
        if (len(answered) >= workers) if isinstance(workers, int) else workers <= answered:
            return sent
        assert time.monotonic() < deadline, f"requests never reached every worker: {answered}"


def test_llm_requests_total_sums_every_worker_on_every_scrape(world, gateway_process):
    server = gateway_process(workers=2)

    n = spread(server, world, 2)

    settled(server, n)
    per_worker = requests_per_worker(server.metrics_dir)
    assert sum(per_worker.values()) == n
    assert len([c for c in per_worker.values() if c > 0]) == 2, per_worker
    for _ in range(12):  # fresh connections: scrapes are answered by both workers
        _, samples = scrape(server.url)
        assert total(samples, "llm_requests_total") == n
        assert total(samples, "llm_requests_total", provider="sim-openai", status="success") == n
        assert total(samples, "llm_request_duration_seconds_count") == n
        assert total(samples, "llm_tokens_total", type="output") > 0


def test_djangos_own_metrics_add_up_too(world, gateway_process):
    server = gateway_process(workers=2)
    m = 30

    with ThreadPoolExecutor(8) as pool:
        statuses = list(
            pool.map(lambda _: httpx.get(f"{server.url}/readyz", timeout=15).status_code, range(m))
        )

    assert statuses == [200] * m
    for _ in range(8):
        _, samples = scrape(server.url)
        assert total(samples, READYZ_COUNT, view="readyz", status="200") == m


def test_a_killed_worker_s_counts_stay_in_the_sums(world, gateway_process):
    server = gateway_process(workers=2)
    n = spread(server, world, 2)
    settled(server, n)
    before = requests_per_worker(server.metrics_dir)
    victim = max(before, key=before.__getitem__)

    os.kill(victim, signal.SIGKILL)  # a worker of the server this test started
    # uvicorn's supervisor starts a replacement: it counts in a file of its own.
    survivor = (set(before) - {victim}).pop()
    more = spread(server, world, {survivor} | _replacement(server, before))

    settled(server, n + more)
    assert requests_per_worker(server.metrics_dir)[victim] == before[victim]
    for _ in range(8):
        assert total(scrape(server.url)[1], "llm_requests_total") == n + more


def _replacement(server, before: dict[int, float]) -> set[int]:
    """The pid of the worker started after `before` was read (its file appears at import)."""
    deadline = time.monotonic() + 60
    while True:
        pids = {int(p.stem.split("_")[1]) for p in Path(server.metrics_dir).glob("counter_*.db")}
        if pids - set(before):
            return pids - set(before)
        assert time.monotonic() < deadline, "no worker replaced the killed one"
        time.sleep(0.1)
