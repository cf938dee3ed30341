"""Failed authentications are throttled per client address: the gateway's API keys (shared by
every process through Redis, at no Redis cost to a successful request) and the log-in pages
(per address and per username)."""

from __future__ import annotations

import threading
import time
import uuid
from urllib.parse import urlparse

import httpx
import pytest
import redis
from django.conf import settings as django_settings

from tests.factories import TEST_PASSWORD, UserFactory
from usage.models import UsageRecord

BODY = {"model": "sim-eco", "messages": [{"role": "user", "content": "hi"}]}
BAD_KEY = "sy-guessed-0000000000000000000000"


@pytest.fixture
def guard(world):
    """The live gateway's auth-failure guard at a limit of 3 a minute; reset afterwards."""
    failures = world.gateway.app.gateway.auth_failures
    saved = failures.limit, failures.window_seconds
    failures.limit, failures.window_seconds = 3, 60
    failures.blocked.clear()
    yield failures
    failures.limit, failures.window_seconds = saved
    failures.blocked.clear()


def call(url, key, *, path="chat/completions", client_ip=None):
    # The in-process server's uvicorn believes X-Forwarded-For from loopback, which lets a
    # test speak from other addresses.
    headers = {"Authorization": f"Bearer {key}"}
    if client_ip:
        headers["X-Forwarded-For"] = client_ip
    if path == "models":
        return httpx.get(f"{url}/v1/models", headers=headers, timeout=10)
    return httpx.post(f"{url}/v1/{path}", headers=headers, json=BODY, timeout=10)


def assert_refused(response, world=None):
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["code"] == "too_many_auth_failures"
    assert error["type"] == "rate_limit_error"
    assert "Too many failed authentications from this address" in error["message"]
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert f"try again in {retry_after} seconds" in error["message"]
    if world is not None:
        assert world.sim.log == []
        world.gateway.flush_usage()
        assert UsageRecord.objects.count() == 0


def test_past_the_limit_an_address_is_refused_even_with_a_valid_key(world, guard):
    for _ in range(3):
        assert call(world.gateway.url, BAD_KEY).status_code == 401

    assert_refused(call(world.gateway.url, world.api_key), world)
    assert_refused(call(world.gateway.url, world.api_key, path="embeddings"), world)
    assert_refused(call(world.gateway.url, world.api_key, path="models"))


def test_failures_below_the_limit_do_not_refuse_a_valid_key(world, guard):
    for _ in range(2):
        assert call(world.gateway.url, BAD_KEY).status_code == 401

    assert call(world.gateway.url, world.api_key).status_code == 200


def test_the_refusal_ends_with_the_window(world, guard):
    guard.window_seconds = 1
    for _ in range(3):
        call(world.gateway.url, BAD_KEY)
    assert_refused(call(world.gateway.url, world.api_key))

    time.sleep(1.2)

    assert call(world.gateway.url, world.api_key).status_code == 200


def test_other_addresses_are_not_refused(world, guard):
    for _ in range(3):
        assert call(world.gateway.url, BAD_KEY, client_ip="198.51.100.7").status_code == 401
    assert_refused(call(world.gateway.url, world.api_key, client_ip="198.51.100.7"))

    assert call(world.gateway.url, world.api_key, client_ip="198.51.100.8").status_code == 200
    assert call(world.gateway.url, world.api_key).status_code == 200


def test_an_ipv6_client_is_counted_by_its_64_not_its_address(world, guard):
    for n in range(3):
        bad = call(world.gateway.url, BAD_KEY, client_ip=f"2001:db8:0:7::{n + 1}")
        assert bad.status_code == 401
    # the next address of the same /64: the same client
    assert_refused(call(world.gateway.url, world.api_key, client_ip="2001:db8:0:7::99"))
    assert call(world.gateway.url, world.api_key, client_ip="2001:db8:0:8::1").status_code == 200


def test_malformed_and_missing_credentials_count_as_failures(world, guard):
    url = f"{world.gateway.url}/v1/chat/completions"
    assert httpx.post(url, json=BODY).status_code == 401
    assert httpx.post(url, json=BODY, headers={"Authorization": "Basic abc"}).status_code == 401
    assert httpx.post(url, json=BODY, headers={"Authorization": "Bearer sy-pg-x"}).status_code == (
        401
    )

    assert_refused(call(world.gateway.url, world.api_key))


class RedisCommands:
    """The commands Redis runs on the tests' database while the block is open (MONITOR)."""

    def __init__(self) -> None:
        self.db = int(urlparse(django_settings.REDIS_URL).path.strip("/") or 0)
        self.marker = f"end-{uuid.uuid4().hex}"
        self.commands: list[str] = []
        self._client = redis.Redis.from_url(django_settings.REDIS_URL)
        self._monitor = self._client.monitor()
        self._thread = threading.Thread(target=self._listen, daemon=True)

    def _listen(self) -> None:
        for event in self._monitor.listen():
            command = event["command"]
            if self.marker in command:
                return
            if event["db"] == self.db:
                self.commands.append(command)

    def __enter__(self) -> RedisCommands:
        self._monitor.__enter__()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        redis.Redis.from_url(django_settings.REDIS_URL).echo(self.marker)
        self._thread.join(10)
        self._monitor.__exit__(*exc)
        self._client.close()

    def about(self, text: str) -> list[str]:
        return [c for c in self.commands if text in c]


def test_a_successful_request_makes_no_redis_call_for_the_throttle(world, guard):
    # Another address is refused, so the in-process list is not empty.
    for _ in range(3):
        call(world.gateway.url, BAD_KEY, client_ip="203.0.113.5")
    assert guard.blocked

    with RedisCommands() as redis_commands:
        assert call(world.gateway.url, world.api_key).status_code == 200

    assert redis_commands.commands != []  # the limits step did use Redis
    assert redis_commands.about("authfail") == []


def test_a_failure_costs_one_redis_call_and_a_refusal_none(world, guard):
    with RedisCommands() as redis_commands:
        assert call(world.gateway.url, BAD_KEY).status_code == 401
    assert len([c for c in redis_commands.about("authfail") if c.startswith("EVAL")]) == 1

    for _ in range(2):
        call(world.gateway.url, BAD_KEY)
    with RedisCommands() as redis_commands:
        assert_refused(call(world.gateway.url, BAD_KEY))
        assert_refused(call(world.gateway.url, world.api_key))
    assert redis_commands.about("authfail") == []


def test_when_redis_is_unreachable_failures_fail_open(world, guard):
    state = world.gateway.state

    async def unreachable():
        import redis.asyncio as aioredis

        return aioredis.Redis(port=1, socket_connect_timeout=0.5, socket_timeout=0.5)

    saved, state.redis = state.redis, world.gateway.run(unreachable())
    try:
        responses = [call(world.gateway.url, BAD_KEY) for _ in range(4)]
    finally:
        state.redis = saved
    assert [r.status_code for r in responses] == [401] * 4
    assert call(world.gateway.url, world.api_key).status_code == 200


def test_failures_add_up_across_gateway_processes(world, gateway_process):
    env = {"SWITCHYARD_AUTH_FAILURE_LIMIT": "4", "SWITCHYARD_AUTH_FAILURE_WINDOW_SECONDS": "60"}
    first, second = gateway_process(**env), gateway_process(**env)

    statuses = [call(p.url, BAD_KEY).status_code for p in (first, second, first, second)]
    assert statuses == [401] * 4

    # The second process counted the 4th failure: it refuses without asking Redis; the
    # first learns it from its next failure's count.
    assert_refused(call(second.url, world.api_key))
    assert_refused(call(first.url, BAD_KEY))
    assert_refused(call(first.url, world.api_key))


@pytest.mark.parametrize(
    ("trusted", "dodges"),
    [("", False), ("127.0.0.1/32", True)],
    ids=["untrusted-header-ignored", "trusted-proxy-believed"],
)
def test_x_forwarded_for_names_the_address_only_from_a_trusted_proxy(
    world, gateway_process, trusted, dodges
):
    process = gateway_process(
        SWITCHYARD_AUTH_FAILURE_LIMIT="3",
        SWITCHYARD_AUTH_FAILURE_WINDOW_SECONDS="60",
        SWITCHYARD_TRUSTED_PROXIES=trusted,
        FORWARDED_ALLOW_IPS="192.0.2.1",  # uvicorn itself believes no one here
    )
    for n in range(3):
        assert call(process.url, BAD_KEY, client_ip=f"198.51.100.{n + 1}").status_code == 401

    response = call(process.url, world.api_key, client_ip="198.51.100.99")

    if dodges:  # another client behind the proxy
        assert response.status_code == 200, response.text
    else:  # one client rotating a header it made up
        assert_refused(response)


# --- the log-in pages ----------------------------------------------------------------------


@pytest.fixture
def login_limits(settings, db):
    settings.SWITCHYARD_LOGIN_FAILURES_PER_ADDRESS = 5
    settings.SWITCHYARD_LOGIN_FAILURES_PER_USERNAME = 3
    settings.SWITCHYARD_LOGIN_FAILURE_WINDOW_SECONDS = 60


def log_in(client, username, password, address="192.0.2.10", path="/login/"):
    return client.post(path, {"username": username, "password": password}, REMOTE_ADDR=address)


def assert_login_refused(client, response):
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 60
    assert b"Too many failed log-ins" in response.content
    assert "_auth_user_id" not in client.session


def test_a_username_is_refused_after_its_failures_even_with_the_right_password(
    client, login_limits
):
    user = UserFactory(username="olivia")
    for n in range(3):
        # From different addresses: the per-username count is what stops this.
        assert log_in(client, "olivia", "wrong", address=f"192.0.2.{n + 1}").status_code == 200

    response = log_in(client, user.username, TEST_PASSWORD, address="192.0.2.99")

    assert_login_refused(client, response)


def test_an_address_is_refused_after_failures_across_usernames(client, login_limits):
    UserFactory(username="victim")
    for n in range(5):
        assert log_in(client, f"user{n}", "wrong").status_code == 200

    assert_login_refused(client, log_in(client, "victim", TEST_PASSWORD))
    # Another address may still log in as that user.
    assert log_in(client, "victim", TEST_PASSWORD, address="192.0.2.77").status_code == 302


def test_a_successful_login_clears_the_usernames_count(client, login_limits):
    UserFactory(username="mike")
    for _ in range(2):
        log_in(client, "mike", "wrong", address="192.0.2.20")
    assert log_in(client, "mike", TEST_PASSWORD, address="192.0.2.20").status_code == 302
    client.logout()
    for _ in range(2):
        log_in(client, "mike", "wrong", address="192.0.2.21")

    assert log_in(client, "mike", TEST_PASSWORD, address="192.0.2.22").status_code == 302


def test_the_admin_login_is_throttled_too(client, login_limits):
    UserFactory(username="root", is_staff=True, is_superuser=True)
    for _ in range(3):
        log_in(client, "root", "wrong", path="/admin/login/")

    response = log_in(client, "root", TEST_PASSWORD, path="/admin/login/")

    assert response.status_code == 200  # the admin's own view re-renders the form
    assert b"Too many failed log-ins" in response.content
    assert "_auth_user_id" not in client.session
