"""Two real workers evaluating caps at the same time raise and email each alert once."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import redis
from django.conf import settings
from django.utils import timezone

from tests.factories import EndUserFactory
from tests.usage.test_alerts import cap, emails_in, spend, thresholds, wait_for
from usage.choices import CapScope
from usage.models import Alert
from usage.tasks import send_cap_alerts

RUNS = 40


def broker_is_idle() -> bool:
    """No message queued and none taken but unacknowledged (a task still running)."""
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        return broker.llen("celery") == 0 and broker.hlen("unacked") == 0
    finally:
        broker.close()


def test_concurrent_runs_on_two_workers_raise_one_alert_per_threshold(
    celery_worker_process, tenant, owner, tmp_path
):
    now = timezone.now()
    users = [EndUserFactory(tenant=tenant) for _ in range(5)]
    cap(tenant, "10")
    cap(tenant, "1", scope=CapScope.EACH_USER)
    spend(tenant, "4.50", at=now - timedelta(minutes=1))
    for user in users:
        spend(tenant, "1.20", at=now - timedelta(minutes=1), end_user=user)
    mail = tmp_path / "mail"
    env = {
        "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "EMAIL_FILE_PATH": str(mail),
    }
    celery_worker_process(name="w1", concurrency=2, **env)
    celery_worker_process(name="w2", concurrency=2, **env)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: send_cap_alerts.delay(), range(RUNS)))
    time.sleep(1)
    wait_for(broker_is_idle, seconds=60)

    # Tenant: $10.50 of $10 (50, 80, 100 %); each user: $1.20 of $1 (50, 80, 100 %).
    assert thresholds(tenant, end_user=None) == [50, 80, 100]
    for user in users:
        assert thresholds(tenant, end_user=user) == [50, 80, 100]
    assert Alert.objects.count() == 3 * 6
    assert not Alert.objects.filter(notified_at__isnull=True).exists()
    mentions = Counter(
        line.removeprefix("- ")
        for email in emails_in(mail)
        for line in email.splitlines()
        if line.startswith("- ")
    )
    assert sorted(mentions) == sorted(Alert.objects.values_list("message", flat=True))
    assert set(mentions.values()) == {1}  # every alert emailed exactly once
