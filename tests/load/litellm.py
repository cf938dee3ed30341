"""Optional: the same wrk points against a LiteLLM proxy (`--litellm PATH_TO_VENV`).

LiteLLM is not installed by the bench. Given a venv with `litellm[proxy]`, it runs one
worker with a config that maps `sim-eco` to the same simulator, no database, a master key,
the local cost map and telemetry off, warms it up, then measures c=1 and c=16.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.load import wrk
from tests.load.harness import CHAT_BODY, Env, free_port, http, rss_kb

MASTER_KEY = "sk-switchyard-bench"
CONFIG = """model_list:
  - model_name: sim-eco
    litellm_params:
      model: openai/sim-eco
      api_base: {api_base}
      api_key: sim-litellm-key
general_settings:
  master_key: {master_key}
litellm_settings:
  telemetry: false
  drop_params: true
"""


def run_litellm(
    venv: Path,
    env: Env,
    sim_url: str,
    _script: Path,
    results: Any,
    seconds: float,
    log: Path,
) -> dict[str, Any]:
    exe = venv / "bin" / "litellm"
    if not exe.exists():
        return {"status": f"skipped: {exe} does not exist"}
    config = env.tmp / "litellm.yaml"
    config.write_text(CONFIG.format(api_base=f"{sim_url}/v1", master_key=MASTER_KEY))
    port = free_port()
    proc = env.spawn(
        "litellm",
        [
            *(str(exe), "--config", str(config)),
            *("--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"),
        ],
        extra={
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_TELEMETRY": "False",
            "DISABLE_SCHEMA_UPDATE": "True",
            "VIRTUAL_ENV": str(venv),
            "PATH": f"{venv / 'bin'}:{env.variables.get('PATH', '')}",
        },
        # LiteLLM reads these too (its own database, cache); it is measured without them.
        unset=("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE"),
    )
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"}
    try:
        env.wait_until(
            proc, lambda: http("GET", f"{url}/health/liveliness", timeout=1)[0] == 200, 120
        )
        startup = time.monotonic() - proc.spawned
        env.wait_until(
            proc,
            lambda: http("POST", f"{url}/v1/chat/completions", CHAT_BODY, headers, 10)[0] == 200,
            60,
        )
        script = wrk.write_script(env.tmp / "litellm.lua", CHAT_BODY, MASTER_KEY)
        chat = f"{url}/v1/chat/completions"
        wrk.run("litellm warm-up", chat, script, connections=4, seconds=10, log=log)
        for c in (1, 16):
            r = wrk.run(f"litellm c={c}", chat, script, connections=c, seconds=seconds, log=log)
            results.wrk[("litellm", c)] = r
        rss = (rss_kb(proc.pid) or 0) / 1024
        # With --num_workers 1 the server may still be a child of the CLI process.
        return {
            "status": f"measured (start-up to healthy {startup:.1f} s, RSS of the CLI process "
            f"{rss:.0f} MB)",
            "startup_s": round(startup, 1),
            "rss_mb": round(rss, 1),
        }
    except Exception as exc:  # optional comparison: report, never fail the bench
        return {"status": f"failed: {str(exc)[:300]}"}
    finally:
        env.stop(proc)
