"""Spending alerts: one per threshold per period, emailed once, and a signed webhook."""

from __future__ import annotations

import hashlib
import hmac
import smtplib
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from email import message_from_string, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.utils import timezone

from tests.factories import EndUserFactory, MembershipFactory, UserFactory
from usage import alerting, webhooks
from usage.choices import CapMode, CapScope, Outcome
from usage.models import Alert, SpendingCap, UsageRecord
from usage.services import rotate_webhook_secret
from usage.tasks import send_cap_alerts

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


def spend(tenant, usd: str, *, at: datetime = NOW - timedelta(days=1), end_user=None) -> None:
    UsageRecord.objects.create(
        created_at=at,
        tenant=tenant,
        end_user=end_user,
        request_id=uuid.uuid4(),
        outcome=Outcome.SUCCESS,
        cost_usd=Decimal(usd),
    )


def cap(tenant, amount: str = "10", **fields) -> SpendingCap:
    fields.setdefault("scope", CapScope.TENANT)
    fields.setdefault("mode", CapMode.SOFT)
    return SpendingCap.objects.create(tenant=tenant, amount_usd=Decimal(amount), **fields)


def thresholds(tenant, **filters) -> list[int]:
    return sorted(
        Alert.objects.filter(tenant=tenant, **filters).values_list("threshold", flat=True)
    )


@pytest.fixture
def people(tenant) -> SimpleNamespace:
    def member(role: str):
        user = UserFactory(email=f"{role}-{uuid.uuid4().hex[:6]}@example.com")
        MembershipFactory(tenant=tenant, user=user, role=role)
        return user

    return SimpleNamespace(
        owner=member("owner"),
        admin=member("admin"),
        member=member("member"),
        viewer=member("viewer"),
    )


# --- thresholds and periods ----------------------------------------------------------------


def test_half_the_cap_raises_one_alert_at_50_percent(tenant, people, mailoutbox):
    cap(tenant, "10")
    spend(tenant, "5.50")

    notified = alerting.send_cap_alerts(now=NOW)

    assert [a.threshold for a in notified] == [50]
    alert = Alert.objects.get(tenant=tenant)
    assert alert.period_start == date(2026, 3, 1)
    assert alert.notified_at == NOW
    assert "$5.50 of $10.00" in alert.message
    assert len(mailoutbox) == 1


def test_crossing_80_percent_later_raises_the_80_percent_alert(tenant, people, mailoutbox):
    cap(tenant, "10")
    spend(tenant, "5.50")
    alerting.send_cap_alerts(now=NOW)

    spend(tenant, "3.00")
    notified = alerting.send_cap_alerts(now=NOW + timedelta(minutes=5))

    assert [a.threshold for a in notified] == [80]
    assert thresholds(tenant) == [50, 80]
    assert len(mailoutbox) == 2
    assert "80 %" in mailoutbox[1].subject


def test_a_rerun_raises_nothing_and_sends_nothing(tenant, people, mailoutbox):
    cap(tenant, "10")
    spend(tenant, "8.50")
    alerting.send_cap_alerts(now=NOW)

    assert alerting.send_cap_alerts(now=NOW + timedelta(minutes=5)) == []
    assert alerting.send_cap_alerts(now=NOW + timedelta(minutes=10)) == []

    assert thresholds(tenant) == [50, 80]
    assert len(mailoutbox) == 1  # both thresholds in one email


def test_the_next_billing_period_alerts_again(tenant, people, mailoutbox):
    tenant.billing_day = 5
    tenant.save()
    cap(tenant, "10")
    spend(tenant, "6", at=datetime(2026, 3, 10, tzinfo=UTC))
    alerting.send_cap_alerts(now=NOW)

    spend(tenant, "1", at=datetime(2026, 4, 6, tzinfo=UTC))
    assert alerting.send_cap_alerts(now=datetime(2026, 4, 7, tzinfo=UTC)) == []  # $1 of $10
    spend(tenant, "5", at=datetime(2026, 4, 8, tzinfo=UTC))
    notified = alerting.send_cap_alerts(now=datetime(2026, 4, 9, tzinfo=UTC))

    assert [(a.threshold, a.period_start) for a in notified] == [(50, date(2026, 4, 5))]
    assert Alert.objects.filter(tenant=tenant, threshold=50).count() == 2
    assert len(mailoutbox) == 2


def test_a_jump_past_every_threshold_raises_each_once_in_one_email(tenant, people, mailoutbox):
    cap(tenant, "10", mode=CapMode.HARD)
    spend(tenant, "10.40")

    alerting.send_cap_alerts(now=NOW)

    assert thresholds(tenant) == [50, 80, 100]
    assert len(mailoutbox) == 1
    assert mailoutbox[0].body.count("% of the monthly spending cap reached") == 3
    assert "Requests are refused" in Alert.objects.get(threshold=100).message


def test_custom_thresholds_are_used(tenant, people):
    cap(tenant, "10", alert_thresholds=[25, 90])
    spend(tenant, "5")

    alerting.send_cap_alerts(now=NOW)

    assert thresholds(tenant) == [25]


def test_each_end_user_is_measured_against_the_default_or_their_own_cap(tenant, people):
    alice, bob, carol = (EndUserFactory(tenant=tenant, external_id=n) for n in "abc")
    cap(tenant, "1", scope=CapScope.EACH_USER)
    cap(tenant, "10", scope=CapScope.USER, end_user=carol)
    spend(tenant, "0.60", end_user=alice)
    spend(tenant, "0.90", end_user=bob)
    spend(tenant, "5.50", end_user=carol)
    spend(tenant, "3.00")  # no end user: only a tenant cap would count it

    alerting.send_cap_alerts(now=NOW)

    assert thresholds(tenant, end_user=alice) == [50]
    assert thresholds(tenant, end_user=bob) == [50, 80]
    assert thresholds(tenant, end_user=carol) == [50]  # of her own $10, not the $1 default
    assert Alert.objects.filter(tenant=tenant, end_user=None).count() == 0
    assert Alert.objects.get(end_user=bob, threshold=80).message.startswith("End user b:")


def test_another_tenants_spend_and_caps_do_not_count(tenant, other_tenant, people):
    cap(tenant, "10")
    cap(other_tenant, "100")
    spend(other_tenant, "9")

    alerting.send_cap_alerts(now=NOW)

    assert Alert.objects.count() == 0


def test_a_disabled_cap_raises_nothing(tenant, people):
    cap(tenant, "10", is_enabled=False)
    spend(tenant, "9")

    alerting.send_cap_alerts(now=NOW)

    assert Alert.objects.count() == 0


# --- email ---------------------------------------------------------------------------------


def test_the_email_goes_to_owners_and_admins_only(tenant, people, mailoutbox):
    cap(tenant, "10")
    spend(tenant, "5")

    alerting.send_cap_alerts(now=NOW)

    (email,) = mailoutbox
    assert sorted(email.to) == sorted([people.owner.email, people.admin.email])
    assert tenant.name in email.subject


def test_a_failed_email_is_sent_by_the_next_run(tenant, people, mailoutbox, monkeypatch):
    cap(tenant, "10")
    spend(tenant, "5", at=timezone.now() - timedelta(minutes=1))
    real_send_mail = alerting.send_mail

    def smtp_down(*args, **kwargs):
        raise smtplib.SMTPServerDisconnected("connection lost")

    monkeypatch.setattr(alerting, "send_mail", smtp_down)
    assert alerting.send_cap_alerts(now=timezone.now()) == []
    assert Alert.objects.get().notified_at is None

    monkeypatch.setattr(alerting, "send_mail", real_send_mail)
    assert len(alerting.send_cap_alerts(now=timezone.now())) == 1
    assert len(mailoutbox) == 1


def test_two_evaluations_notify_each_alert_once(tenant, people, mailoutbox):
    cap(tenant, "10")
    spend(tenant, "5")
    created = alerting.raise_cap_alerts(now=NOW)

    first = alerting.notify_alerts(alerts=created, now=NOW)
    second = alerting.notify_alerts(alerts=created, now=NOW)

    assert len(first) == 1
    assert second == []
    assert len(mailoutbox) == 1


# --- webhook -------------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[SimpleNamespace]:
    """A local webhook receiver: records each POST, answers the queued statuses, then 200."""
    received: list[tuple[dict[str, str], bytes]] = []
    statuses: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(statuses.pop(0) if statuses else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield SimpleNamespace(
        url=f"http://127.0.0.1:{server.server_port}/hooks/switchyard",
        received=received,
        statuses=statuses,
    )
    server.shutdown()
    server.server_close()


def expected_signature(secret: str, headers: dict[str, str], body: bytes) -> str:
    signed = headers["x-switchyard-timestamp"].encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


@pytest.fixture
def hooked(tenant, receiver, settings) -> SimpleNamespace:
    """The tenant with a webhook at `receiver` and its signing secret."""
    settings.SWITCHYARD_WEBHOOK_ALLOW_PRIVATE_HOSTS = True
    tenant.webhook_url = receiver.url
    tenant.save()
    secret = rotate_webhook_secret(tenant=tenant, actor=None)
    return SimpleNamespace(tenant=tenant, secret=secret)


def an_alert(tenant) -> Alert:
    cap(tenant, "10")
    spend(tenant, "5")
    (alert,) = alerting.raise_cap_alerts(now=NOW)
    return alert


def test_a_new_alert_queues_its_webhook_when_the_tenant_has_one(
    hooked, people, django_capture_on_commit_callbacks
):
    cap(hooked.tenant, "10")
    spend(hooked.tenant, "5")

    with django_capture_on_commit_callbacks() as callbacks:
        alerting.send_cap_alerts(now=NOW)

    assert len(callbacks) == 1  # deliver_webhook.delay(alert id), sent once committed


def test_the_webhook_is_signed_over_timestamp_and_body(hooked, receiver):
    alert = an_alert(hooked.tenant)

    assert webhooks.deliver_alert_webhook(alert_id=alert.pk, now=timezone.now()) == "delivered"

    ((headers, body),) = receiver.received
    assert headers["x-switchyard-signature"] == expected_signature(hooked.secret, headers, body)
    assert headers["content-type"] == "application/json"
    assert webhooks.verify_signature(
        secret=hooked.secret,
        timestamp=headers["x-switchyard-timestamp"],
        signature=headers["x-switchyard-signature"],
        body=body,
        now=timezone.now(),
    )
    assert b'"threshold":50' in body
    assert f'"id":{alert.pk}'.encode() in body
    assert hooked.secret.encode() not in body


def test_a_tampered_or_replayed_webhook_does_not_verify(hooked, receiver):
    alert = an_alert(hooked.tenant)
    webhooks.deliver_alert_webhook(alert_id=alert.pk, now=timezone.now())
    ((headers, body),) = receiver.received
    check = {
        "secret": hooked.secret,
        "timestamp": headers["x-switchyard-timestamp"],
        "signature": headers["x-switchyard-signature"],
        "body": body,
        "now": timezone.now(),
    }

    assert not webhooks.verify_signature(**{**check, "body": body.replace(b"50", b"80")})
    # a timestamp other than the signed one (one second earlier than what was sent)
    moved = str(int(headers["x-switchyard-timestamp"]) - 1)
    assert not webhooks.verify_signature(**{**check, "timestamp": moved})
    assert not webhooks.verify_signature(**{**check, "now": timezone.now() + timedelta(hours=1)})
    assert not webhooks.verify_signature(**{**check, "secret": "whsec_someone-else"})


def test_a_500_is_retried_and_the_next_try_delivers_once(hooked, receiver):
    alert = an_alert(hooked.tenant)
    receiver.statuses.append(500)

    with pytest.raises(webhooks.WebhookRetryableError):
        webhooks.deliver_alert_webhook(alert_id=alert.pk, now=timezone.now())
    alert.refresh_from_db()
    assert alert.webhook_delivered_at is None
    assert alert.webhook_error == "HTTP 500 from the webhook."

    assert webhooks.deliver_alert_webhook(alert_id=alert.pk, now=timezone.now()) == "delivered"
    assert webhooks.deliver_alert_webhook(alert_id=alert.pk, now=timezone.now()) == (
        "already_delivered"
    )
    alert.refresh_from_db()
    assert alert.webhook_delivered_at is not None
    assert alert.webhook_attempts == 2
    assert len(receiver.received) == 2


def test_a_4xx_is_not_retried(hooked, receiver):
    alert = an_alert(hooked.tenant)
    receiver.statuses.append(410)

    assert webhooks.deliver_alert_webhook(alert_id=alert.pk, now=timezone.now()) == "refused"
    alert.refresh_from_db()
    assert "not retried" in alert.webhook_error


def test_a_private_address_is_refused_unless_allowed(hooked, receiver, settings):
    settings.SWITCHYARD_WEBHOOK_ALLOW_PRIVATE_HOSTS = False
    alert = an_alert(hooked.tenant)

    assert webhooks.deliver_alert_webhook(alert_id=alert.pk, now=timezone.now()) == "refused"
    assert receiver.received == []
    alert.refresh_from_db()
    assert "non-public address" in alert.webhook_error


def test_no_webhook_is_sent_without_a_signing_secret(tenant, receiver, settings):
    settings.SWITCHYARD_WEBHOOK_ALLOW_PRIVATE_HOSTS = True
    tenant.webhook_url = receiver.url
    tenant.save()
    alert = an_alert(tenant)

    assert webhooks.deliver_alert_webhook(alert_id=alert.pk, now=timezone.now()) == "refused"
    assert receiver.received == []


def test_the_signing_secret_is_stored_encrypted(hooked):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT webhook_secret FROM tenants_tenant WHERE id = %s", [hooked.tenant.pk]
        )
        (stored,) = cursor.fetchone()
    assert hooked.secret not in stored
    assert str(type(hooked.tenant).objects.get(pk=hooked.tenant.pk).webhook_secret) == "••••"


# --- the real worker -----------------------------------------------------------------------


def wait_for(condition, *, seconds: float = 30.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def emails_in(folder: Path) -> list[str]:
    """Bodies of the messages the file-based email backend wrote (a file per connection)."""
    if not folder.exists():
        return []
    text = "".join(p.read_text() for p in sorted(folder.iterdir()))
    return [
        message_from_string(part.strip(), policy=policy.default).get_body().get_content()
        for part in text.split("-" * 79)
        if "Subject:" in part
    ]


def test_the_worker_sends_alerts_and_retries_a_failing_webhook(
    celery_worker_process, tenant, people, receiver, tmp_path
):
    tenant.webhook_url = receiver.url
    tenant.save()
    secret = rotate_webhook_secret(tenant=tenant, actor=None)
    cap(tenant, "10")
    spend(tenant, "8.50", at=timezone.now() - timedelta(minutes=1))
    receiver.statuses.extend([500, 500])
    mail = tmp_path / "mail"
    celery_worker_process(
        name="alerts",
        EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
        EMAIL_FILE_PATH=str(mail),
        SWITCHYARD_WEBHOOK_ALLOW_PRIVATE_HOSTS="true",
    )

    send_cap_alerts.delay()
    wait_for(lambda: Alert.objects.filter(webhook_delivered_at__isnull=False).count() == 2)

    assert thresholds(tenant) == [50, 80]
    assert Alert.objects.filter(notified_at__isnull=True).count() == 0
    assert len(emails_in(mail)) == 1
    assert sorted(Alert.objects.values_list("webhook_attempts", flat=True)) in ([1, 3], [2, 2])
    assert len(receiver.received) == 4  # two 500s, then one success per alert
    for headers, body in receiver.received:
        assert headers["x-switchyard-signature"] == expected_signature(secret, headers, body)
