"""Alert webhooks: a JSON POST to the tenant's URL, signed with the tenant's secret.

The signature is HMAC-SHA256 over f"{timestamp}.{body}" (the raw body bytes), sent as
`X-Switchyard-Signature: sha256=<hex>` with the timestamp in `X-Switchyard-Timestamp`. A
receiver recomputes it, compares in constant time and refuses a timestamp older than a few
minutes, so a captured request cannot be replayed later. Delivery is at least once: the
body's `id` (the alert's) lets a receiver drop a repeat.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import datetime
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.db.models import F

from config import netguard
from tenants.crypto import DecryptionError, SealedSecret
from usage.models import Alert

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Switchyard-Signature"
TIMESTAMP_HEADER = "X-Switchyard-Timestamp"
# How old a signed timestamp a receiver should accept (what `verify_signature` allows).
TOLERANCE_SECONDS = 300
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
# Answers worth another try later; any other non-2xx means the receiver refuses the alert.
RETRY_STATUSES = frozenset({408, 425, 429})


class WebhookError(Exception):
    """A delivery attempt failed."""


class WebhookRetryableError(WebhookError):
    """The receiver failed (5xx, 429, ...): the task retries with backoff."""


def sign(*, secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for `body` sent at `timestamp` (Unix seconds)."""
    message = str(timestamp).encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_signature(
    *, secret: str, timestamp: str, signature: str, body: bytes, now: datetime
) -> bool:
    """What a receiver checks: the signature matches and the timestamp is recent."""
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    if abs(now.timestamp() - sent_at) > TOLERANCE_SECONDS:
        return False
    return hmac.compare_digest(sign(secret=secret, timestamp=sent_at, body=body), signature)


def alert_payload(alert: Alert) -> dict:
    """The JSON body of an alert's webhook (ids, no secrets)."""
    return {
        "id": alert.pk,
        "type": f"alert.{alert.kind}",
        "tenant": alert.tenant.slug,
        "end_user": alert.end_user.external_id if alert.end_user_id else None,
        "threshold": alert.threshold,
        "period_start": alert.period_start.isoformat() if alert.period_start else None,
        "message": alert.message,
        "created_at": alert.created_at.isoformat(),
    }


def _client() -> httpx.Client:
    """The client a webhook is sent with. A tenant's URL must not reach loopback, private or
    link-local addresses (cloud metadata, the installation's own services): the SSRF guard
    checks the addresses each connection goes to, when it connects, so a name that resolved
    to a public address when the URL was saved cannot rebind to an internal one. Plain http
    stays allowed: the body is signed and carries no secret. Redirects are not followed."""
    if settings.SWITCHYARD_WEBHOOK_ALLOW_PRIVATE_HOSTS:
        return httpx.Client(timeout=TIMEOUT, follow_redirects=False)
    return netguard.guarded_client(require_tls=False, timeout=TIMEOUT, follow_redirects=False)


def _record(alert_id: int, **fields) -> None:
    Alert.objects.filter(pk=alert_id).update(**fields)


def _refused(alert_id: int, tenant_id: int, reason: str) -> str:
    _record(alert_id, webhook_error=f"Refused: {reason}."[:200])
    logger.warning("alert.webhook_refused", extra={"tenant_id": tenant_id})
    return "refused"


def deliver_alert_webhook(*, alert_id: int, now: datetime) -> str:
    """POST the alert to its tenant's webhook unless that already succeeded; returns what
    happened ("delivered", "already_delivered", "no_webhook", "refused").

    Raises WebhookRetryableError or httpx.TransportError when another try may succeed.
    """
    alert = Alert.objects.select_related("tenant", "end_user").get(pk=alert_id)
    if alert.webhook_delivered_at is not None:
        return "already_delivered"
    tenant = alert.tenant
    if not tenant.webhook_url:
        return "no_webhook"
    secret = tenant.webhook_secret
    if not isinstance(secret, SealedSecret) or not secret.ciphertext:
        _record(alert_id, webhook_error="No signing secret: set one before alerts are sent.")
        logger.warning("alert.webhook_without_secret", extra={"tenant_id": tenant.pk})
        return "refused"
    if urlsplit(tenant.webhook_url).scheme not in ("http", "https"):
        return _refused(alert_id, tenant.pk, "not an http(s) URL")
    try:
        key = secret.reveal()
    except DecryptionError:
        _record(alert_id, webhook_error="The signing secret cannot be decrypted.")
        raise

    body = json.dumps(alert_payload(alert), separators=(",", ":"), sort_keys=True).encode()
    timestamp = int(now.timestamp())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Switchyard-Webhooks/1",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret=key, timestamp=timestamp, body=body),
    }
    _record(alert_id, webhook_attempts=F("webhook_attempts") + 1)
    try:
        with _client() as client:
            response = client.post(tenant.webhook_url, content=body, headers=headers)
    except netguard.DestinationRefused as exc:
        return _refused(alert_id, tenant.pk, exc.reason)
    except httpx.TransportError as exc:
        _record(alert_id, webhook_error=f"{type(exc).__name__} calling the webhook."[:200])
        logger.warning("alert.webhook_unreachable", extra={"alert_id": alert_id})
        raise
    status = response.status_code
    if 200 <= status < 300:
        Alert.objects.filter(pk=alert_id, webhook_delivered_at__isnull=True).update(
            webhook_delivered_at=now, webhook_error=""
        )
        logger.info("alert.webhook_delivered", extra={"alert_id": alert_id})
        return "delivered"
    if status >= 500 or status in RETRY_STATUSES:
        _record(alert_id, webhook_error=f"HTTP {status} from the webhook.")
        raise WebhookRetryableError(f"HTTP {status}")
    _record(alert_id, webhook_error=f"HTTP {status} from the webhook; not retried.")
    logger.warning("alert.webhook_rejected", extra={"alert_id": alert_id, "status": status})
    return "refused"
