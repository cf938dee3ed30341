"""The configuration version: bumped by every config write, watched by every web process.

The gateway keeps a snapshot of configuration in memory and reloads it when this number
changes, so a change made anywhere applies everywhere within a poll interval, no restart.
Redis holds it in production; the embedded default uses a file under var/, which still
crosses processes on one machine (web, worker, beat).
"""

from __future__ import annotations

import functools
import logging
import os
import time

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

REDIS_KEY = "sy:config_version"


@functools.cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


def _path():
    return settings.VAR_DIR / "config_version"


def bump(*, tenant_id: int | None = None) -> None:
    """Announce a configuration change (call in transaction.on_commit)."""
    if settings.REDIS_URL:
        try:
            _redis().incr(REDIS_KEY)
            return
        except redis.RedisError:
            logger.warning("config_version.bump_failed", extra={"tenant_id": tenant_id})
            return
    path = _path()
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(str(time.time_ns()))
    os.replace(tmp, path)


def read_sync() -> str:
    """The current version as an opaque string ("0" before any bump)."""
    if settings.REDIS_URL:
        value = _redis().get(REDIS_KEY)
        return value.decode() if value else "0"
    try:
        return _path().read_text()
    except FileNotFoundError:
        return "0"
