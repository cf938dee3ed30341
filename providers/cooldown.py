"""The shared circuit breaker's Redis layout: key names and the failure script.

The gateway (async, routing/gateway/health.py) and the sync side (the periodic health check,
providers/health.py) read and write the same keys with the same script, so a provider cooled
down by either is skipped by every web process at its next poll.

Per provider: `sy:fail:{id}` counts failures within the window, `sy:cool:{id}` exists while it
cools down (skipped by the router), `sy:probe:{id}` while it is half-open afterwards (it goes
last in every chain until a request to it succeeds).
"""

from __future__ import annotations

FAILURE_WINDOW_SECONDS = 60
# The probe key outlives the cool-down by this factor: a provider that comes back after a
# long outage is still tried last until it has answered once.
PROBE_TTL_FACTOR = 20

# KEYS: fail, cool, probe. ARGV: threshold, window, cooldown, probe ttl.
# Returns 1 when this failure (re)opened the breaker.
RECORD_FAILURE = """
if redis.call('EXISTS', KEYS[3]) == 1 and redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('SET', KEYS[2], 1, 'EX', ARGV[3])
  redis.call('SET', KEYS[3], 1, 'EX', ARGV[4])
  redis.call('DEL', KEYS[1])
  return 1
end
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if n >= tonumber(ARGV[1]) and redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('SET', KEYS[2], 1, 'EX', ARGV[3])
  redis.call('SET', KEYS[3], 1, 'EX', ARGV[4])
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


def keys(provider_id: int) -> tuple[str, str, str]:
    """(fail, cool, probe) key names of `provider_id`."""
    return (f"sy:fail:{provider_id}", f"sy:cool:{provider_id}", f"sy:probe:{provider_id}")


def failure_args(*, threshold: int, cooldown_seconds: int) -> list[int]:
    """RECORD_FAILURE's ARGV for a breaker opening after `threshold` failures in the window."""
    return [
        threshold,
        FAILURE_WINDOW_SECONDS,
        cooldown_seconds,
        cooldown_seconds * PROBE_TTL_FACTOR,
    ]
