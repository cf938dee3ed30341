"""The benchmark's own world: a throw-away database, the simulator and one gateway worker.

Everything runs on 127.0.0.1 in child processes that this module starts and stops itself
(by their own pid, never by name). Nothing here imports Django: the bench talks to the
project only through `manage.py`-equivalent commands and HTTP, as an operator would.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHAT_BODY = b'{"model":"sim-eco","messages":[{"role":"user","content":"hi"}]}'
STREAM_BODY = b'{"model":"sim-eco","messages":[{"role":"user","content":"hi"}],"stream":true}'
PG_URL = "postgres://postgres@127.0.0.1:5432/sy_bench"
PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/12"
# Variables the bench sets itself; inherited values (a test run's, a developer's) are dropped.
OWN_PREFIXES = ("SWITCHYARD_", "DATABASE_", "REDIS_", "CELERY_", "PYTHONPYCACHEPREFIX")


class BenchError(RuntimeError):
    """The harness could not set up or measure; the message says what and where the log is."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid: int) -> int | None:
    """VmRSS of `pid` in KiB (None once the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_busy(seconds: float = 1.0) -> float:
    """Share (0-1) of all CPUs busy over `seconds`, from /proc/stat (before the bench starts
    anything, this is other work on the machine, which skews every number)."""

    def read() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return sum(values) - idle, sum(values)

    busy0, total0 = read()
    time.sleep(seconds)
    busy1, total1 = read()
    return (busy1 - busy0) / max(1, total1 - total0)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of `pid` so far (0.0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


class CpuMeter:
    """CPU used during one measurement: by the measured server, by the bench's own side (the
    load generator, this process, the other server), and by anything else on the machine."""

    def __init__(self, server_pid: int, other_pids: tuple[int, ...] = ()) -> None:
        self.server_pid = server_pid
        self.other_pids = other_pids

    def _read(self) -> tuple[float, float, float, float, float]:
        with open("/proc/stat") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
        idle = values[3] + values[4]
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk, once waited for
        ours = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
        ours += sum(process_cpu_s(p) for p in self.other_pids)
        return (
            (sum(values) - idle) / CLOCK_TICKS,
            sum(values) / CLOCK_TICKS,
            process_cpu_s(self.server_pid),
            ours,
            time.monotonic(),
        )

    def __enter__(self) -> CpuMeter:
        self._start = self._read()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._read()
        busy, total, server, ours, _ = (e - s for e, s in zip(end, self._start, strict=True))
        self.server_s = server
        # What the rest of the machine used, as a share of all CPUs over the measurement.
        self.foreign_pct = max(0.0, 100 * (busy - server - ours) / total) if total else 0.0


def loadavg() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def http(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> tuple[int, bytes]:
    """One blocking request (readiness checks only); status 0 when nothing answered."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, urllib.error.URLError):
        return 0, b""


@dataclass
class Proc:
    """A child process with its log file; `stop` ends it (SIGINT, then SIGKILL) by pid."""

    name: str
    popen: subprocess.Popen
    log: Path
    spawned: float  # time.monotonic() just before the spawn

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGINT)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


@dataclass
class StartUp:
    health_s: float  # spawn -> first 200 on /healthz
    completion_s: float  # spawn -> first 200 on a chat completion
    rss_kb: int | None  # right after the first completion
    cold: bool  # no compiled bytecode was available to the process


class RSSSampler(threading.Thread):
    """Samples a process's VmRSS every `interval` seconds: (monotonic time, KiB)."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        super().__init__(name=f"rss-{pid}", daemon=True)
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            value = rss_kb(self.pid)
            if value is None:
                return
            self.samples.append((time.monotonic(), value))
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(2)

    def peak(self) -> int | None:
        return max((kb for _, kb in self.samples), default=None)


@dataclass
class Env:
    """The bench's environment: temp dir, variables, and the processes it started."""

    tmp: Path
    services: bool
    variables: dict[str, str]
    keep: bool = False  # leave the temp dir (logs, database) for a look afterwards
    procs: list[Proc] = field(default_factory=list)
    api_key: str = ""

    @classmethod
    def create(cls, *, services: bool, keep: bool = False) -> Env:
        from cryptography.fernet import Fernet

        tmp = Path(tempfile.mkdtemp(prefix="sy-bench-"))
        variables = {k: v for k, v in os.environ.items() if not k.startswith(OWN_PREFIXES)} | {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "SWITCHYARD_VAR_DIR": str(tmp),
            "SECRET_KEY": secrets.token_urlsafe(40),
            "SWITCHYARD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "DEBUG": "false",
            "SWITCHYARD_TLS": "false",
            "LOG_LEVEL": "WARNING",
            # Compiled bytecode goes to the temp dir: the first process of a kind compiles,
            # later ones read it, whatever PYTHONDONTWRITEBYTECODE says on this machine.
            "PYTHONPYCACHEPREFIX": str(tmp / "pycache"),
            "PYTHONUNBUFFERED": "1",
        }
        variables.pop("PYTHONDONTWRITEBYTECODE", None)
        if services:
            variables["DATABASE_URL"] = PG_URL
            variables["REDIS_URL"] = REDIS_URL
            variables["CELERY_BROKER_URL"] = REDIS_URL
        else:
            variables["DATABASE_URL"] = f"sqlite:///{tmp / 'bench.sqlite3'}"
        return cls(tmp=tmp, services=services, variables=variables, keep=keep)

    # -- databases -------------------------------------------------------------------

    def _postgres(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql)

    def prepare_services(self) -> None:
        import redis

        try:
            self._postgres("DROP DATABASE IF EXISTS sy_bench WITH (FORCE)")
            self._postgres("CREATE DATABASE sy_bench")
            client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
            client.flushdb()
            client.close()
        except Exception as exc:
            raise BenchError(
                f"--services needs PostgreSQL on 127.0.0.1:5432 and Redis on 6379: {exc}"
            ) from exc

    def setup_database(self, simulator_url: str) -> float:
        """migrate + seed_demo --json; returns the seconds it took and keeps the API key."""
        if self.services:
            self.prepare_services()
        started = time.monotonic()
        variables = self.variables | {"SWITCHYARD_SIMULATOR_URL": simulator_url}
        log = self.tmp / "setup.log"
        with open(log, "wb") as err:
            done = subprocess.run(
                [sys.executable, "-m", "tests.load.setup_db"],
                cwd=ROOT,
                env=variables,
                stdout=subprocess.PIPE,
                stderr=err,
                timeout=180,
                check=False,
            )
        if done.returncode != 0:
            raise BenchError(f"migrate/seed_demo failed; see {log}:\n{log.read_text()[-2000:]}")
        report = json.loads(done.stdout)
        self.api_key = report["tenants"][0]["api_key"]
        return time.monotonic() - started

    # -- processes -------------------------------------------------------------------

    def spawn(
        self,
        name: str,
        argv: list[str],
        *,
        extra: dict[str, str] | None = None,
        unset: tuple[str, ...] = (),
    ) -> Proc:
        log = self.tmp / f"{name}.log"
        variables = {k: v for k, v in self.variables.items() if k not in unset} | (extra or {})
        with open(log, "ab") as out:
            spawned = time.monotonic()
            popen = subprocess.Popen(  # noqa: S603
                argv,
                cwd=ROOT,
                env=variables,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C of the bench does not hit them first
            )
        proc = Proc(name, popen, log, spawned)
        self.procs.append(proc)
        return proc

    def start_simulator(
        self, name: str, *, port: int | None = None, latency_ms: float = 0, tps: float = 0
    ) -> tuple[Proc, str]:
        port = port or free_port()
        proc = self.spawn(
            name,
            [
                sys.executable,
                "-m",
                "providers.simulator",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--latency-ms",
                f"{latency_ms:g}",
                "--tokens-per-second",
                f"{tps:g}",
            ],
        )
        url = f"http://127.0.0.1:{port}"
        self.wait_until(proc, lambda: http("GET", f"{url}/_sim/health", timeout=1)[0] == 200, 30)
        return proc, url

    def start_gateway(
        self, name: str, *, port: int | None = None, cold: bool = False, timeout: float = 60
    ) -> tuple[Proc, str, StartUp]:
        """One uvicorn worker; waits for /healthz and for a first successful completion.

        `cold`: the worker gets an empty bytecode cache of its own, so it compiles every
        module it imports (what a first start on a machine without .pyc files costs).
        """
        port = port or free_port()
        extra = {}
        if cold:
            cache = self.tmp / f"pycache-{name}"
            shutil.rmtree(cache, ignore_errors=True)
            extra["PYTHONPYCACHEPREFIX"] = str(cache)
        proc = self.spawn(
            name,
            [
                sys.executable,
                "-m",
                "uvicorn",
                "config.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--no-access-log",
                "--lifespan",
                "on",
                "--workers",
                "1",
                "--log-level",
                "warning",
            ],
            extra=extra,
        )
        url = f"http://127.0.0.1:{port}"
        self.wait_until(proc, lambda: http("GET", f"{url}/healthz", timeout=1)[0] == 200, timeout)
        health = time.monotonic() - proc.spawned
        headers = {"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"}

        last: list[tuple[int, bytes]] = []

        def completes() -> bool:
            answer = http("POST", f"{url}/v1/chat/completions", CHAT_BODY, headers, timeout=5)
            last[:] = [answer]
            return answer[0] == 200

        try:
            self.wait_until(proc, completes, timeout)
        except BenchError as exc:
            status, body = last[0] if last else (0, b"")
            raise BenchError(
                f"{exc}\nlast completion answer: {status} {body[:300].decode(errors='replace')}"
            ) from None
        completion = time.monotonic() - proc.spawned
        return proc, url, StartUp(health, completion, rss_kb(proc.pid), cold)

    def wait_until(self, proc: Proc, ready, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if not proc.alive():
                raise BenchError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.tail()}")
            if time.monotonic() > deadline:
                raise BenchError(f"{proc.name} not ready after {timeout:.0f} s:\n{proc.tail()}")
            time.sleep(0.01)

    def stop(self, proc: Proc) -> None:
        proc.stop()
        with contextlib.suppress(ValueError):
            self.procs.remove(proc)

    def close(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                proc.stop()
        self.procs.clear()
        if self.services:
            with contextlib.suppress(Exception):
                self._postgres("DROP DATABASE IF EXISTS sy_bench WITH (FORCE)")
        if not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
