"""Start the web server: `python -m config.serve <uvicorn arguments>` (see Procfile).

Under uvicorn's --workers each worker is its own process with its own metrics, so
prometheus_client's multiprocess mode keeps them in files under PROMETHEUS_MULTIPROC_DIR
(default: var/prometheus) and /metrics adds them up. Files left by an earlier run would add
stale counts to the new one (and a recycled pid would resume them), so the directory is
emptied here, once, in the parent before any worker starts. Never by a worker: a worker that
restarts must not erase its siblings' counts, nor the counts of the worker it replaces.
The worker files are not otherwise cleaned: only counters and histograms are kept there
(provider health is read at scrape time), and a dead worker's counts must stay in the sums.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping, Sequence
from pathlib import Path

from uvicorn.main import main as uvicorn

BASE_DIR = Path(__file__).resolve().parent.parent
METRIC_FILE_KINDS = frozenset({"counter", "gauge", "histogram", "summary"})


def prepare_metrics_dir(environ: MutableMapping[str, str] = os.environ) -> Path:
    """Create the multiprocess metrics directory, or empty it of an earlier run's files, and
    export it to the workers."""
    var_dir = Path(environ.get("SWITCHYARD_VAR_DIR") or BASE_DIR / "var")
    path = Path(environ.get("PROMETHEUS_MULTIPROC_DIR") or var_dir / "prometheus")
    path.mkdir(parents=True, exist_ok=True)
    # Only prometheus_client's own files (counter_<pid>.db, gauge_<mode>_<pid>.db, ...): the
    # directory may be a mount point, or a path set by mistake to one that holds other files.
    for entry in path.glob("*.db"):
        if entry.name.split("_", 1)[0] in METRIC_FILE_KINDS and entry.is_file():
            entry.unlink(missing_ok=True)
    environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    prepare_metrics_dir()
    uvicorn(args=list(sys.argv[1:] if argv is None else argv), prog_name="uvicorn")


if __name__ == "__main__":
    main()
