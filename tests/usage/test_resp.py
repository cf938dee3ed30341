"""The gateway's pipelined Redis connection, against the real Redis of REDIS_URL."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis
from django.conf import settings

from usage.resp import RedisPipe

SCRIPT = b"return {tonumber(ARGV[1]) + 1, redis.call('INCR', KEYS[1])}"


@pytest.fixture
def key():
    name = f"test:resp:{uuid.uuid4().hex}"
    yield name
    redis.Redis.from_url(settings.REDIS_URL).delete(name)


def run(coro):
    return asyncio.run(coro)


def test_commands_land_in_the_urls_database(key):
    async def go():
        pipe = RedisPipe(settings.REDIS_URL)
        try:
            assert await pipe.call(b"SET", key, 41) == b"OK"
            return await pipe.call(b"INCR", key)
        finally:
            await pipe.aclose()

    assert run(go()) == 42
    # the sync client of the same URL (same database index) sees it
    assert redis.Redis.from_url(settings.REDIS_URL).get(key) == b"42"


def test_concurrent_callers_get_their_own_replies_in_order(key):
    async def go():
        pipe = RedisPipe(settings.REDIS_URL)
        try:
            replies = await asyncio.gather(*(pipe.call(b"INCR", key) for _ in range(200)))
            echoes = await asyncio.gather(*(pipe.call(b"ECHO", str(i)) for i in range(50)))
            return replies, echoes
        finally:
            await pipe.aclose()

    replies, echoes = run(go())
    assert sorted(replies) == list(range(1, 201))
    assert echoes == [str(i).encode() for i in range(50)]


def test_evalsha_loads_the_script_after_redis_forgot_it(key):
    async def go():
        pipe = RedisPipe(settings.REDIS_URL)
        try:
            first = await pipe.evalsha(SCRIPT, [key], [1])
            await pipe.call(b"SCRIPT", b"FLUSH")
            second = await pipe.evalsha(SCRIPT, [key], [5])
            third = await pipe.evalsha_nowait(SCRIPT, [key], [7])
            return first, second, third
        finally:
            await pipe.aclose()

    assert run(go()) == ([2, 1], [6, 2], [8, 3])


def test_an_error_reply_fails_only_its_own_call(key):
    async def go():
        pipe = RedisPipe(settings.REDIS_URL)
        try:
            await pipe.call(b"SET", key, "text")
            bad = pipe.call(b"INCR", key)
            good = pipe.call(b"GET", key)
            return await asyncio.gather(bad, good, return_exceptions=True)
        finally:
            await pipe.aclose()

    bad, good = run(go())
    assert isinstance(bad, redis.ResponseError)
    assert "not an integer" in str(bad)
    assert good == b"text"


def test_a_killed_connection_fails_pending_calls_and_the_next_call_reconnects(key):
    admin = redis.Redis.from_url(settings.REDIS_URL)

    async def go():
        pipe = RedisPipe(settings.REDIS_URL)
        try:
            client_id = await pipe.call(b"CLIENT", b"ID")
            # a call in flight (blocked server-side) when the connection is killed
            blocked = asyncio.ensure_future(pipe.call(b"BLPOP", key, 5))
            await asyncio.sleep(0.1)
            await asyncio.to_thread(admin.client_kill_filter, _id=client_id)
            with pytest.raises(redis.ConnectionError):
                await blocked
            value = await pipe.call(b"INCR", key)
            # the same server run: nothing it holds was lost, so no new epoch
            return value, pipe.epoch
        finally:
            await pipe.aclose()

    assert run(go()) == (1, 0)


def test_a_reply_that_does_not_come_in_time_is_a_timeout_and_the_pipe_recovers(key):
    async def go():
        pipe = RedisPipe(settings.REDIS_URL, timeout=0.3)
        try:
            with pytest.raises(redis.TimeoutError):
                await pipe.call(b"BLPOP", key, 2)
            return await pipe.call(b"INCR", key)
        finally:
            await pipe.aclose()

    assert run(go()) == 1


def test_an_unreachable_server_is_a_connection_error_quickly():
    async def go():
        pipe = RedisPipe("redis://127.0.0.1:1/0", connect_timeout=0.5)
        with pytest.raises(redis.ConnectionError):
            await pipe.call(b"PING")
        with pytest.raises(redis.ConnectionError):
            pipe.send(b"PING")  # not connected: refused at once, nothing queued
        return pipe

    pipe = run(go())
    assert not pipe._pending


def test_urls_other_than_redis_are_refused():
    with pytest.raises(ValueError, match="unsupported"):
        RedisPipe("unix:///tmp/redis.sock")
