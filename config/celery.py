"""The Celery app; tasks live in each app's tasks.py and are autodiscovered.

The beat schedule below is the default; django-celery-beat installs it into the database
when beat starts, where staff can see, pause and change it (admin: Periodic tasks).
"""

from __future__ import annotations

import os

from celery import Celery
from celery.schedules import crontab

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("switchyard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

app.conf.beat_schedule = {
    # Every minute: a provider that fails is cooled down within a minute of its first
    # failures even when no request has hit it yet.
    "providers.check_health": {"task": "providers.check_health", "schedule": 60.0},
    # Daily at 04:10 UTC, after most providers publish price changes for the day.
    "routing.sync_catalog": {
        "task": "routing.sync_catalog",
        "schedule": crontab(hour=4, minute=10),
    },
    # Every 5 minutes: alerts trail spend by at most that much (the cap itself is live).
    "usage.send_cap_alerts": {"task": "usage.send_cap_alerts", "schedule": 300.0},
    # Hourly at :05, so records of the hour that just ended have been written.
    "usage.roll_up_usage": {"task": "usage.roll_up_usage", "schedule": crontab(minute=5)},
    # Daily at 03:30 UTC, the quietest hour for a long DELETE.
    "usage.apply_retention": {
        "task": "usage.apply_retention",
        "schedule": crontab(hour=3, minute=30),
    },
    # Daily at 05:00 UTC: keys revoked at the provider are found within a day.
    "providers.validate_active_keys": {
        "task": "providers.validate_active_keys",
        "schedule": crontab(hour=5, minute=0),
    },
}
