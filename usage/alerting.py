"""Spending alerts: each enabled cap's thresholds against the spend of the billing period.

One alert per (cap, subject, threshold, period): the unique (tenant, dedupe_key) constraint
makes it so, also when two workers evaluate at the same moment. The Alert row is the in-app
notice; a new alert is also emailed to the tenant's owners and admins and, when the tenant
has a webhook, POSTed to it, signed (usage.webhooks, by the `usage.deliver_webhook` task).
"""

from __future__ import annotations

import logging
import smtplib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import partial

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction

from tenants import selectors as tenant_selectors
from tenants.choices import Role
from tenants.models import EndUser, Tenant
from usage import selectors, tasks
from usage.alerts import raise_alert
from usage.choices import AlertKind, CapMode, CapScope
from usage.models import Alert, SpendingCap
from usage.money import quantize_cents
from usage.periods import period_bounds

logger = logging.getLogger(__name__)

# A new alert whose email failed (or whose worker died before sending it) is sent by the
# next run, as long as it is this recent; later the notice would only confuse.
NOTIFY_RETRY_WINDOW = timedelta(hours=1)
NOTIFIED_ROLES = (Role.OWNER, Role.ADMIN)


@dataclass(frozen=True, slots=True)
class Crossing:
    """A cap's threshold reached by a subject (the tenant, or one end user) in a period."""

    cap: SpendingCap
    end_user_id: int | None
    threshold: int
    spent_usd: Decimal
    period_start: date

    @property
    def dedupe_key(self) -> str:
        subject = "tenant" if self.end_user_id is None else f"user{self.end_user_id}"
        return f"cap:{self.cap.pk}:{subject}:{self.threshold}:{self.period_start:%Y%m%d}"

    def message(self, end_user_label: str | None) -> str:
        whose = "the monthly spending cap" if end_user_label is None else "their monthly cap"
        text = (
            f"{self.threshold} % of {whose} reached: ${quantize_cents(self.spent_usd)} of "
            f"${self.cap.amount_usd} spent since {self.period_start:%Y-%m-%d}."
        )
        if self.cap.mode == CapMode.HARD and self.spent_usd >= self.cap.amount_usd:
            text += " Requests are refused until the period ends."
        if end_user_label is not None:
            text = f"End user {end_user_label}: {text}"
        return text[:300]


def crossed_thresholds(
    *, thresholds: Iterable[object], amount_usd: Decimal, spent_usd: Decimal
) -> list[int]:
    """The thresholds (percent of `amount_usd`) that `spent_usd` has reached, ascending."""
    if spent_usd <= 0:
        return []
    valid = {t for t in thresholds if isinstance(t, int) and not isinstance(t, bool) and t > 0}
    return sorted(t for t in valid if spent_usd * 100 >= amount_usd * t)


def cap_crossings(
    *, tenant: Tenant, caps: Sequence[SpendingCap], now: datetime
) -> Iterator[Crossing]:
    """Every threshold of the tenant's enabled `caps` reached in the period holding `now`.

    An end user with a cap of their own is measured against it, everyone else who spent in
    the period against the each-user default: as the gateway enforces them.
    """
    start, end = period_bounds(tenant.billing_day, now)
    spend = selectors.period_spend(tenant_id=tenant.pk, start=start, end=end)
    own_cap = {cap.end_user_id for cap in caps if cap.scope == CapScope.USER}
    for cap in caps:
        if cap.scope == CapScope.TENANT:
            subjects = [(None, spend.total_usd)]
        elif cap.scope == CapScope.USER:
            subjects = [(cap.end_user_id, spend.by_end_user.get(cap.end_user_id, Decimal(0)))]
        else:
            subjects = [(pk, s) for pk, s in spend.by_end_user.items() if pk not in own_cap]
        for end_user_id, spent in subjects:
            for threshold in crossed_thresholds(
                thresholds=cap.alert_thresholds or [], amount_usd=cap.amount_usd, spent_usd=spent
            ):
                yield Crossing(cap, end_user_id, threshold, spent, start.date())


def raise_cap_alerts(*, now: datetime) -> list[Alert]:
    """Raise an alert for every cap threshold reached in the tenants' current billing
    periods; returns the alerts created by this call (none already existing)."""
    by_tenant: dict[int, list[SpendingCap]] = defaultdict(list)
    for cap in selectors.platform_enabled_caps().select_related("tenant").order_by("pk"):
        by_tenant[cap.tenant_id].append(cap)
    created = []
    for caps in by_tenant.values():
        tenant = caps[0].tenant
        crossings = list(cap_crossings(tenant=tenant, caps=caps, now=now))
        if not crossings:
            continue
        # Most crossings already have their alert: skip those without a failed INSERT each.
        existing = set(
            Alert.objects.filter(
                tenant_id=tenant.pk,
                kind=AlertKind.SPENDING_THRESHOLD,
                period_start=crossings[0].period_start,
            ).values_list("dedupe_key", flat=True)
        )
        crossings = [c for c in crossings if c.dedupe_key not in existing]
        labels = dict(
            EndUser.objects.filter(
                tenant_id=tenant.pk, pk__in={c.end_user_id for c in crossings if c.end_user_id}
            ).values_list("pk", "external_id")
        )
        for crossing in crossings:
            label = None
            if crossing.end_user_id is not None:
                label = labels.get(crossing.end_user_id, f"#{crossing.end_user_id}")
            alert = raise_alert(
                tenant_id=tenant.pk,
                end_user_id=crossing.end_user_id,
                kind=AlertKind.SPENDING_THRESHOLD,
                dedupe_key=crossing.dedupe_key,
                message=crossing.message(label),
                threshold=crossing.threshold,
                period_start=crossing.period_start,
            )
            if alert is not None:
                created.append(alert)
    return created


def notify_alerts(*, alerts: Iterable[Alert], now: datetime) -> list[Alert]:
    """Email each alert not notified yet to its tenant's owners and admins (one email per
    tenant) and queue its webhook; returns those this call notified.

    Each alert is claimed with a conditional UPDATE first, so two workers never both send
    it; a failed email releases the claim for the next run.
    """
    claimed = [
        alert
        for alert in {alert.pk: alert for alert in alerts}.values()
        if Alert.objects.filter(pk=alert.pk, notified_at__isnull=True).update(notified_at=now)
    ]
    by_tenant: dict[int, list[Alert]] = defaultdict(list)
    for alert in claimed:
        by_tenant[alert.tenant_id].append(alert)
    tenants = Tenant.objects.in_bulk(list(by_tenant))
    notified = []
    for tenant_id, group in by_tenant.items():
        tenant = tenants[tenant_id]
        try:
            _email(tenant, group)
        except (smtplib.SMTPException, OSError):
            logger.exception("alert.email_failed", extra={"tenant_id": tenant_id})
            Alert.objects.filter(pk__in=[a.pk for a in group]).update(notified_at=None)
            continue
        if tenant.webhook_url:
            for alert in group:
                transaction.on_commit(partial(tasks.deliver_webhook.delay, alert.pk))
        notified.extend(group)
    return notified


def _email(tenant: Tenant, alerts: Sequence[Alert]) -> None:
    recipients = sorted(
        set(
            tenant_selectors.members(tenant=tenant)
            .filter(role__in=NOTIFIED_ROLES, user__is_active=True)
            .exclude(user__email="")
            .values_list("user__email", flat=True)
        )
    )
    if not recipients:
        return
    alerts = sorted(alerts, key=lambda a: (a.end_user_id is not None, a.threshold or 0))
    subject = f"[Switchyard] {tenant.name}: " + (
        alerts[0].message if len(alerts) == 1 else f"{len(alerts)} spending alerts"
    )
    body = "\n".join(
        [
            f"Spending alerts for {tenant.name}:",
            "",
            *(f"- {alert.message}" for alert in alerts),
            "",
            f"Caps and spending: {settings.SWITCHYARD_PUBLIC_URL}",
        ]
    )
    send_mail(subject[:200], body, None, recipients)
    logger.info("alert.emailed", extra={"tenant_id": tenant.pk, "alerts": len(alerts)})


def send_cap_alerts(*, now: datetime) -> list[Alert]:
    """Raise the spending alerts reached in the current billing periods and notify the new
    ones (and recent ones whose notice failed); returns the alerts notified."""
    created = raise_cap_alerts(now=now)
    unsent = Alert.objects.filter(
        kind=AlertKind.SPENDING_THRESHOLD,
        notified_at__isnull=True,
        created_at__gte=now - NOTIFY_RETRY_WINDOW,
    )
    return notify_alerts(alerts=[*created, *unsent], now=now)
