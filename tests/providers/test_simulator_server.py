"""The simulator's HTTP plumbing, control endpoints, Python API and command line."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time

import aiohttp
import httpx
import orjson
import pytest

from providers.simulator import Simulator, SimulatorThread

CHAT = orjson.dumps({"model": "sim-eco", "messages": [{"role": "user", "content": "hi"}]})


def raw_request(
    body: bytes = CHAT, *, extra: str = "", path: str = "/v1/chat/completions"
) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: sim\r\nAuthorization: Bearer raw\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


class RawClient:
    """A bare socket with a read buffer, to see exactly what goes over the wire."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed by the server")
        self.buffer += data

    def read_response(self) -> tuple[bytes, bytes]:
        """One Content-Length response: (head, body)."""
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        length = int(re.search(rb"content-length: (\d+)", head).group(1))
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return head, body

    def read_raw(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def closed_by_server(self) -> bool:
        return not self.buffer and self.sock.recv(1) == b""


@pytest.fixture
def conn(sim: SimulatorThread):
    with socket.create_connection((sim.host, sim.port), timeout=2) as sock:
        yield RawClient(sock)


def test_pipelined_requests_are_answered_in_order(sim, conn):
    second = orjson.dumps({"model": "second", "messages": [{"role": "user", "content": "x"}]})
    conn.send(raw_request() + raw_request(second))

    _, first_body = conn.read_response()
    _, second_body = conn.read_response()

    assert orjson.loads(first_body)["model"] == "sim-eco"
    assert orjson.loads(second_body)["model"] == "second"
    assert [e["model"] for e in sim.log] == ["sim-eco", "second"]


def test_keep_alive_and_connection_close(sim, conn):
    conn.send(raw_request())
    head, _ = conn.read_response()
    conn.send(raw_request(extra="Connection: close\r\n"))
    last_head, _ = conn.read_response()

    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"connection: close" not in head
    assert b"connection: close" in last_head
    assert conn.closed_by_server()
    assert len(sim.log) == 2


def test_expect_100_continue(conn):
    conn.send(raw_request(extra="Expect: 100-continue\r\n")[: -len(CHAT)])
    interim = conn.read_raw(25)
    conn.send(CHAT)
    head, body = conn.read_response()

    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert head.startswith(b"HTTP/1.1 200")
    assert orjson.loads(body)["object"] == "chat.completion"


def test_body_split_across_packets(conn):
    request = raw_request()
    for index in range(0, len(request), 7):
        conn.send(request[index : index + 7])
        time.sleep(0.001)  # separate TCP segments

    head, body = conn.read_response()

    assert head.startswith(b"HTTP/1.1 200")
    assert orjson.loads(body)["usage"]["completion_tokens"] == 20


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"NONSENSE\r\n\r\n", b"400"),
        (b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", b"501"),
        (b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: x\r\n\r\n", b"400"),
    ],
)
def test_unframeable_requests_get_an_error_and_a_close(conn, request_bytes, status):
    conn.send(request_bytes)
    head, _ = conn.read_response()

    assert head.split()[1] == status
    assert conn.closed_by_server()


def test_unknown_endpoint_and_wrong_method(sim):
    missing = httpx.post(f"{sim.url}/v1/completions/legacy", headers={"x-api-key": "k"})
    wrong = httpx.get(f"{sim.url}/v1/chat/completions", headers={"x-api-key": "k"})

    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "unknown_url"
    assert wrong.status_code == 405
    assert [e["status"] for e in sim.log] == [404, 405]


def test_control_endpoints(sim):
    httpx.post(f"{sim.url}/v1/chat/completions", headers={"x-api-key": "k1"}, content=CHAT)
    health = httpx.get(f"{sim.url}/_sim/health")
    log = httpx.get(f"{sim.url}/_sim/log").json()
    cleared = httpx.delete(f"{sim.url}/_sim/log")

    assert health.json() == {"ok": True}
    assert [(e["api_key"], e["completion_tokens"]) for e in log] == [("k1", 20)]
    assert set(log[0]) >= {
        "path",
        "protocol",
        "model",
        "api_key",
        "stream",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "fault",
        "status",
        "completed",
        "ts",
    }
    assert cleared.status_code == 200
    assert sim.log == []


def test_log_is_a_copy(sim):
    httpx.post(f"{sim.url}/v1/chat/completions", headers={"x-api-key": "k"}, content=CHAT)

    sim.log[0]["api_key"] = "tampered"

    assert sim.log[0]["api_key"] == "k"


async def test_async_simulator_api_and_bounded_log():
    async with Simulator(output_tokens=3, log_size=2, models=("extra-model",)) as simulator:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", simulator.url)
        async with aiohttp.ClientSession(headers={"x-api-key": "k"}) as session:
            for _ in range(3):
                async with session.post(f"{simulator.url}/v1/chat/completions", data=CHAT) as r:
                    answer = await r.json()
            async with session.get(f"{simulator.url}/v1/models") as r:
                models = [m["id"] for m in (await r.json())["data"]]
        simulator.script(["500"])
        pending = simulator.pending_script

    assert answer["choices"][0]["message"]["content"] == "Simulated answer to:"
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert models[-1] == "extra-model"
    assert [e["path"] for e in simulator.log] == ["/v1/chat/completions", "/v1/models"]
    assert pending == ["500"]


async def test_stop_releases_hanging_clients():
    simulator = await Simulator().start()
    async with aiohttp.ClientSession(headers={"x-api-key": "k"}) as session:
        request = asyncio.ensure_future(
            session.post(
                f"{simulator.url}/v1/chat/completions", data=CHAT, headers={"x-sim-fault": "hang"}
            )
        )
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await simulator.stop()
        with pytest.raises(aiohttp.ClientError):
            await asyncio.wait_for(request, 2)

    assert time.monotonic() - started < 1


def test_simulator_thread_context_manager():
    with SimulatorThread(latency_ms=50) as server:
        started = time.monotonic()
        response = httpx.post(
            f"{server.url}/v1/chat/completions", headers={"x-api-key": "k"}, content=CHAT
        )
        elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert elapsed >= 0.045  # the configured default latency


def test_command_line_process():
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    process = subprocess.Popen(
        [sys.executable, "-m", "providers.simulator", "--port", "0", "--models", "cli-model"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = process.stderr.readline()
        url = re.search(r"http://\S+", line).group(0)
        models = httpx.get(f"{url}/v1/models", headers={"authorization": "Bearer k"}).json()
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(10)

    assert [m["id"] for m in models["data"]][-1] == "cli-model"
    assert code == 0


async def _throughput(url: str, total: int, concurrency: int) -> float:
    async def worker(session: aiohttp.ClientSession, count: int) -> None:
        for _ in range(count):
            async with session.post(f"{url}/v1/chat/completions", data=CHAT) as response:
                await response.read()
                assert response.status == 200

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers={"x-api-key": "k"}) as session:
        await worker(session, 100)
        started = time.perf_counter()
        await asyncio.gather(*(worker(session, total // concurrency) for _ in range(concurrency)))
        return total / (time.perf_counter() - started)


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.load
def test_throughput_above_3k_rps(request):
    """Non-streamed chat completions, 16 concurrent aiohttp clients, server in a process.

    Besides the end-to-end rate (bounded by the client on a small machine), the server's
    own CPU time gives its one-core capacity, which is what the 3k floor is about.
    """
    if "load" not in (request.config.getoption("-m") or ""):
        pytest.skip("benchmark: run with -m load")
    if not os.path.exists("/proc/self/stat"):
        pytest.skip("needs /proc to read the server's CPU time")
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    process = subprocess.Popen(
        [sys.executable, "-m", "providers.simulator", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    total = 10_000
    try:
        url = re.search(r"http://\S+", process.stderr.readline()).group(0)
        cpu_before = _cpu_seconds(process.pid)
        rps = asyncio.run(_throughput(url, total, 16))
        capacity = (total + 100) / (_cpu_seconds(process.pid) - cpu_before)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)

    print(f"simulator: {rps:.0f} requests/s end to end, {capacity:.0f} per server CPU second")  # noqa: T201
    assert capacity > 3000
