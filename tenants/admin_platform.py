"""Audit for the admins Switchyard did not write: users and groups (django.contrib.auth) and
the beat schedule (django_celery_beat). Making someone a superuser or stopping the daily key
validation is a staff action like any other, so each of these admins is registered again
with AuditedAdminMixin on top of its own class: edits, deletions and changelist actions are
recorded. None of them is gateway configuration, so none bumps the config version.
"""

from __future__ import annotations

import django_celery_beat.admin  # noqa: F401 - registers the admins replaced below
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)

from tenants.admin_mixins import AuditedAdminMixin

User = get_user_model()


class AuditedUserAdmin(AuditedAdminMixin, UserAdmin):
    """Passwords are never in an entry: the creation form's are masked, and a change through
    the password form is recorded as having happened, nothing more."""

    audit_noun = "user"
    audit_bumps_config = False

    def user_change_password(self, request, id, form_url=""):
        response = super().user_change_password(request, id, form_url)
        if request.method == "POST" and response.status_code == 302:  # saved; a form error is 200
            user = self.get_object(request, unquote(id))
            if user is not None:
                self.record_audit(request, user, verb="password_changed")
        return response


class AuditedGroupAdmin(AuditedAdminMixin, GroupAdmin):
    audit_noun = "group"
    audit_bumps_config = False


def _reregister(model, noun: str) -> None:
    """Register `model` again with its current admin class under AuditedAdminMixin."""
    current = type(admin.site._registry[model])
    audited = type(
        f"Audited{current.__name__}",
        (AuditedAdminMixin, current),
        {"audit_noun": noun, "audit_bumps_config": False, "__module__": __name__},
    )
    admin.site.unregister(model)
    admin.site.register(model, audited)


for _model, _admin in ((User, AuditedUserAdmin), (Group, AuditedGroupAdmin)):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)
    admin.site.register(_model, _admin)

for _model, _noun in (
    (PeriodicTask, "periodic_task"),
    (CrontabSchedule, "crontab_schedule"),
    (IntervalSchedule, "interval_schedule"),
    (SolarSchedule, "solar_schedule"),
    (ClockedSchedule, "clocked_schedule"),
):
    _reregister(_model, _noun)
