"""Billing periods: a tenant's month starts on its billing day (1-28)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from django.utils import timezone


def period_start(billing_day: int, today: date) -> date:
    """The first day of the billing period containing `today`."""
    if today.day >= billing_day:
        return today.replace(day=billing_day)
    previous = today.replace(day=1) - timedelta(days=1)
    return previous.replace(day=billing_day)


def period_end(start: date) -> date:
    """The first day of the next period."""
    month = start.month % 12 + 1
    year = start.year + (start.month == 12)
    return start.replace(year=year, month=month)


def period_bounds(billing_day: int, now: datetime) -> tuple[datetime, datetime]:
    """Aware UTC datetimes [start, end) of the period containing `now`."""
    start = period_start(billing_day, now.astimezone(timezone.UTC).date())
    end = period_end(start)
    return (
        datetime.combine(start, time.min, tzinfo=timezone.UTC),
        datetime.combine(end, time.min, tzinfo=timezone.UTC),
    )
