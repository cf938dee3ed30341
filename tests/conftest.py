"""Shared fixtures. The suite runs against real PostgreSQL and Redis (see README)."""

from __future__ import annotations

import socket
from urllib.parse import urlparse

import pytest
from django.conf import settings

from tests.factories import (
    EndUserFactory,
    MembershipFactory,
    TenantFactory,
    UserFactory,
)

pytest_plugins = [
    "tests.simulator_fixtures",
    "tests.gateway_fixtures",
    "tests.world_fixtures",
    "tests.celery_fixtures",
]

START_HINT = {
    "postgresql": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "redis": "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no",
}


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), 2
        ):
            return True
    except OSError:
        return False


def pytest_sessionstart(session: pytest.Session) -> None:
    missing = []
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("postgresql") and not _reachable(
        f"pg://{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}", 5432
    ):
        missing.append(
            f"PostgreSQL at {db.get('HOST')}:{db.get('PORT')} (start: {START_HINT['postgresql']})"
        )
    if settings.REDIS_URL and not _reachable(settings.REDIS_URL, 6379):
        missing.append(f"Redis at {settings.REDIS_URL} (start: {START_HINT['redis']})")
    if missing:
        pytest.exit(
            "The test suite needs real services that are not reachable:\n  " + "\n  ".join(missing),
            2,
        )


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """The default hasher costs ~0.5 s a user on this machine; tests create hundreds."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _clean_redis():
    """Each test starts with an empty Redis database (limits, cool-downs, config version)."""
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    yield
    client.close()


@pytest.fixture
def tenant(db):
    return TenantFactory(slug="tenant-a", name="Tenant A")


@pytest.fixture
def other_tenant(db):
    return TenantFactory(slug="tenant-b", name="Tenant B")


@pytest.fixture
def owner(tenant):
    return MembershipFactory(tenant=tenant, role="owner").user


@pytest.fixture
def member(tenant):
    return MembershipFactory(tenant=tenant, role="member").user


@pytest.fixture
def viewer(tenant):
    return MembershipFactory(tenant=tenant, role="viewer").user


@pytest.fixture
def staff_user(db):
    return UserFactory(is_staff=True, is_superuser=True)


@pytest.fixture
def end_user(tenant):
    return EndUserFactory(tenant=tenant)
