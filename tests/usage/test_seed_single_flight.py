"""A burst that finds a spend counter missing reads the month from the database once."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

from tests.usage.limits_helpers import BODY, fire, run, unthrottled
from usage import counters
from usage.choices import CapScope
from usage.models import SpendingCap


def test_a_burst_on_a_missing_counter_seeds_it_once(world, monkeypatch):
    from routing.gateway import limits

    unthrottled(world)
    SpendingCap.objects.create(
        tenant=world.tenant, scope=CapScope.TENANT, amount_usd=Decimal("100"), mode="hard"
    )
    world.gateway.sync()
    calls = []
    lock = threading.Lock()
    spent_between = limits.selectors.spent_between

    def slow_spent_between(**kwargs):
        with lock:
            calls.append(kwargs)
        time.sleep(0.3)  # long enough for the whole burst to find the counter missing
        return spent_between(**kwargs)

    monkeypatch.setattr(limits.selectors, "spent_between", slow_spent_between)
    pattern = f"sy:spend:t:{world.tenant.pk}:*"
    # The counter starts missing: the first requests must seed it.
    assert not list(counters.sync_client().scan_iter(match=pattern))

    results = run(fire(world.gateway.url, world.api_key, [BODY] * 40))

    assert [status for status, _, _ in results] == [200] * 40
    assert len(calls) == 1
    assert calls[0]["tenant_id"] == world.tenant.pk
    assert len(list(counters.sync_client().scan_iter(match=pattern))) == 1
