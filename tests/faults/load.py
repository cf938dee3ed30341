"""Concurrent load against a gateway, and the accounting that says what was lost.

`Load` runs workers on one asyncio loop that take jobs until none is left (or the fault
script says stop), while the script injects the fault; every answer is kept with when it
was sent and when it ended, so a test can sort answers into before / during / after.
`usage_rows` and `check_recorded` compare what clients were answered with the usage rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import aiohttp
import orjson

from usage.choices import Outcome
from usage.models import UsageRecord


@dataclass(frozen=True, slots=True)
class Job:
    key: str
    body: dict
    kind: str = ""
    path: str = "/v1/chat/completions"


@dataclass(slots=True)
class Answer:
    job: Job
    sent_at: float
    ended_at: float = 0.0
    status: int | None = None  # None: no HTTP answer at all (connection refused or reset)
    request_id: uuid.UUID | None = None
    attempts: int | None = None
    provider: str | None = None
    code: str | None = None  # error code of the JSON error or of the SSE error event
    complete: bool = False  # the whole body arrived (a stream up to its last line)
    body: bytes = b""
    error: str = ""

    @property
    def is_stream(self) -> bool:
        return bool(self.job.body.get("stream"))

    @property
    def ok(self) -> bool:
        """A complete 200 the client could use: a JSON body, or a stream that ended [DONE]."""
        if self.status != 200 or not self.complete:
            return False
        return b"data: [DONE]" in self.body if self.is_stream else True

    def json(self) -> dict:
        return orjson.loads(self.body)


def _read_answer(answer: Answer, response: aiohttp.ClientResponse, body: bytes) -> None:
    answer.status = response.status
    answer.body = body
    headers = response.headers
    if "x-request-id" in headers:
        answer.request_id = uuid.UUID(headers["x-request-id"])
    if "x-switchyard-attempts" in headers:
        answer.attempts = int(headers["x-switchyard-attempts"])
    answer.provider = headers.get("x-switchyard-provider")
    if response.status != 200:
        try:
            answer.code = orjson.loads(body)["error"]["code"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            answer.code = None
        return
    if b'data: {"error"' in body:
        line = body[body.index(b'data: {"error"') + 6 :].split(b"\n", 1)[0]
        answer.code = orjson.loads(line)["error"]["code"]


@dataclass
class Load:
    """Workers POSTing jobs at a gateway; `answers` fill in as they end."""

    url: str
    concurrency: int = 12
    timeout: float = 30.0
    pause: float = 0.0  # seconds a worker waits between requests (time-driven loads)
    answers: list[Answer] = field(default_factory=list)
    stopped: bool = False
    _changed: asyncio.Event | None = None

    async def run(
        self,
        jobs: Callable[[], Job | None] | Iterable[Job],
        script: Callable[[Load], Awaitable[None]] | None = None,
    ) -> list[Answer]:
        """Run until `jobs` is exhausted (an iterable, or a callable returning None) and the
        script has ended; the script may set `stopped` to end a callable's endless jobs."""
        if not callable(jobs):
            iterator = iter(jobs)
            jobs = lambda: next(iterator, None)  # noqa: E731
        self._changed = asyncio.Event()
        connector = aiohttp.TCPConnector(limit=self.concurrency, force_close=False)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            workers = [
                asyncio.create_task(self._worker(session, jobs)) for _ in range(self.concurrency)
            ]
            if script is not None:
                try:
                    await script(self)
                finally:
                    self.stopped = True
            await asyncio.gather(*workers)
        return self.answers

    async def _worker(self, session: aiohttp.ClientSession, jobs) -> None:
        while not self.stopped and (job := jobs()) is not None:
            answer = Answer(job, sent_at=time.monotonic())
            try:
                async with session.post(
                    f"{self.url}{job.path}",
                    json=job.body,
                    headers={"Authorization": f"Bearer {job.key}"},
                ) as response:
                    parts = []
                    try:
                        async for chunk in response.content.iter_any():
                            parts.append(chunk)
                        answer.complete = True
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        answer.error = repr(exc)  # cut mid-body: what arrived is kept
                    _read_answer(answer, response, b"".join(parts))
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                answer.error = repr(exc)
            answer.ended_at = time.monotonic()
            self.answers.append(answer)
            self._changed.set()
            if self.pause:
                await asyncio.sleep(self.pause)

    async def wait_for(self, predicate: Callable[[list[Answer]], bool], seconds: float) -> None:
        """Wait until `predicate(answers)` holds; fail the test after `seconds`."""
        deadline = time.monotonic() + seconds
        while not predicate(self.answers):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"load: condition not reached in {seconds} s")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))

    def ended_between(self, start: float, end: float) -> list[Answer]:
        """Answers to requests sent after `start` that ended before `end`."""
        return [a for a in self.answers if a.sent_at >= start and a.ended_at <= end]


def tally(answers: Iterable[Answer]) -> Counter:
    """How many answers per (status, code): the numbers a fault test reports."""
    return Counter((a.status, a.code) for a in answers)


@dataclass(frozen=True, slots=True)
class Row:
    request_id: uuid.UUID
    attempt: int
    outcome: int
    provider_id: int | None
    http_status: int | None
    output_tokens: int
    is_stream: bool


def usage_rows(**filters) -> dict[uuid.UUID, list[Row]]:
    """Every usage row matching `filters`, grouped by request id, in attempt order."""
    rows: dict[uuid.UUID, list[Row]] = defaultdict(list)
    for values in (
        UsageRecord.objects.filter(**filters)
        .order_by("request_id", "attempt", "pk")
        .values_list(
            "request_id",
            "attempt",
            "outcome",
            "provider_id",
            "http_status",
            "output_tokens",
            "is_stream",
        )
    ):
        rows[values[0]].append(Row(*values))
    return dict(rows)


def duplicates(rows: dict[uuid.UUID, list[Row]]) -> list[tuple[uuid.UUID, int]]:
    """(request id, attempt) pairs recorded more than once."""
    return [
        (request_id, attempt)
        for request_id, group in rows.items()
        for attempt, count in Counter(r.attempt for r in group).items()
        if count > 1
    ]


def wait_for_rows(expected: int, seconds: float = 20.0, **filters) -> int:
    """Poll until `expected` rows match `filters` (the writer runs in another process)."""
    deadline = time.monotonic() + seconds
    while True:
        count = UsageRecord.objects.filter(**filters).count()
        if count >= expected or time.monotonic() > deadline:
            return count
        time.sleep(0.2)


def check_recorded(answers: Iterable[Answer], rows: dict[uuid.UUID, list[Row]]) -> dict:
    """Every complete 200 has exactly one success row, on its last attempt, after as many
    failed attempts as it reports; returns the counts (and the problems, which must be [])."""
    problems = []
    counts = Counter()
    for answer in answers:
        if not answer.ok:
            continue
        counts["ok"] += 1
        group = rows.get(answer.request_id, [])
        successes = [r for r in group if r.outcome == Outcome.SUCCESS]
        if len(successes) != 1:
            problems.append((answer.request_id, "success rows", len(successes)))
            continue
        if answer.attempts is not None and (
            successes[0].attempt != answer.attempts or len(group) != answer.attempts
        ):
            problems.append((answer.request_id, "attempts", answer.attempts, group))
            continue
        counts["rows"] += len(group)
    counts["problems"] = len(problems)
    return {"counts": dict(counts), "problems": problems[:10]}
