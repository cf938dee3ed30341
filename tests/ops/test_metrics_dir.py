"""config/serve.py empties the metrics directory of an earlier run, and only of that."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.mmap_dict import MmapedDict, mmap_key

from config.serve import prepare_metrics_dir
from tests.ops.scrape import scrape, total

LABELS = ["provider", "model", "power_level", "status"]


def stale_counter(directory: Path, pid: int, count: float) -> Path:
    """A counter file as a worker of an earlier run left it."""
    path = directory / f"counter_{pid}.db"
    values = MmapedDict(str(path))
    series = ["sim-openai", "sim-eco", "eco", "success"]
    key = mmap_key("llm_requests", "llm_requests_total", LABELS, series, "")
    values.write_value(key, count, 0.0)
    values.close()
    return path


def test_an_earlier_runs_files_go_and_nothing_else(tmp_path):
    stale = [
        stale_counter(tmp_path, 4242, 1000),
        tmp_path / "histogram_4242.db",
        tmp_path / "gauge_livesum_4242.db",
    ]
    for path in stale[1:]:
        path.write_bytes(b"")
    kept = [tmp_path / "notes.db", tmp_path / "README", tmp_path / "sub" / "counter_1.db"]
    for path in kept:
        path.parent.mkdir(exist_ok=True)
        path.write_text("not ours")
    environ = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}

    assert prepare_metrics_dir(environ) == tmp_path

    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in kept)


def test_the_default_is_under_the_var_dir_and_is_exported(tmp_path):
    environ = {"SWITCHYARD_VAR_DIR": str(tmp_path)}

    path = prepare_metrics_dir(environ)

    assert path == tmp_path / "prometheus"
    assert path.is_dir()
    assert environ["PROMETHEUS_MULTIPROC_DIR"] == str(path)


def test_a_server_start_drops_the_counts_of_the_run_before(world, gateway_process, tmp_path):
    stale_counter(tmp_path, 4242, 1000)

    server = gateway_process(PROMETHEUS_MULTIPROC_DIR=str(tmp_path))

    assert total(scrape(server.url)[1], "llm_requests_total") == 0
    assert not (tmp_path / "counter_4242.db").exists()
