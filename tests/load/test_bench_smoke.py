"""The load benchmark still runs end to end: `python -m tests.load.bench --quick`.

No timing is asserted (CI machines vary, and the numbers are for people to read); only that
the harness set up its own world, measured every point, wrote the table, and that every
request it sent succeeded.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys

import pytest

from tests.load.harness import ROOT

pytestmark = pytest.mark.skipif(
    shutil.which("wrk") is None,
    reason="wrk is not installed (apt-get install -y wrk); the benchmark drives load with it",
)

BUDGET_S = 150  # a hang guard, not a timing assertion (a quick run takes ~40 s alone)
NON_STREAMING_ROWS = ("| direct | 1 |", "| gateway | 1 |", "| direct | 16 |", "| gateway | 16 |")


def _section(table: str, heading: str) -> str:
    """The lines of `table` from the paragraph starting with `heading` to the next blank pair."""
    start = table.index(heading)
    end = table.find("\n\n", table.index("|---", start))
    return table[start : end if end != -1 else None]


@pytest.mark.timeout(BUDGET_S + 40)
def test_quick_bench_measures_every_point_without_a_failed_request(tmp_path):
    out, raw = tmp_path / "bench.md", tmp_path / "bench.json"
    bench = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "tests.load.bench", "--quick", "--out", out, "--json", raw],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = bench.communicate(timeout=BUDGET_S)
    except subprocess.TimeoutExpired:
        bench.send_signal(signal.SIGINT)  # the bench stops its simulator and gateway itself
        stdout, stderr = bench.communicate(timeout=30)
        pytest.fail(f"the quick benchmark took over {BUDGET_S} s:\n{stderr[-3000:]}")

    assert bench.returncode == 0, stderr[-3000:]
    table = out.read_text()
    assert table in stdout  # printed and written alike

    non_streaming = _section(table, "Non-streaming")
    for row in NON_STREAMING_ROWS:
        assert row in non_streaming, row
    streaming = _section(table, "Streaming")
    assert "| direct | 16 |" in streaming
    assert "| gateway | 16 |" in streaming
    assert "| paced direct | 16 |" in streaming
    assert "| paced gateway | 16 |" in streaming
    assert "start-up" in table
    assert "RSS after" in table

    results = json.loads(raw.read_text())
    assert results["core_failures"] == 0
    assert {(r["path"], r["connections"]) for r in results["wrk"]} == {
        ("direct", 1),
        ("gateway", 1),
        ("direct", 16),
        ("gateway", 16),
    }
    for run in results["wrk"] + results["warmups"]:
        assert run["requests"] > 0, run
        assert run["non_2xx"] == 0, run
        assert run["socket_errors"] == 0, run
    assert {r["path"] for r in results["streams"]} == {
        "direct",
        "gateway",
        "paced direct",
        "paced gateway",
    }
    for run in results["streams"]:
        assert run["streams"] > 0, run
        assert run["errors"] == {}, run
    assert results["startups"]
    assert results["startups"][0]["completion_s"] > 0
