"""The log-in page (and the admin's log-in form) with failed log-ins throttled.

Failures are counted per client address and per username (tenants.throttle, through
Redis so every web process sees them). Past either limit within the window the form is
refused before the password is checked, so guessing stops even for the right password
until the window ends. A username's count is cleared by its successful log-in; an
address's is not, or an attacker could reset it by logging in to an account of their own.
"""

from __future__ import annotations

import logging

import redis
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError

from config.client_ip import client_address
from tenants import throttle

logger = logging.getLogger(__name__)

THROTTLED = (
    "Too many failed log-ins from here or for this username. Try again in %(minutes)s minute(s)."
)


class ThrottledLoginMixin:
    """For an AuthenticationForm: refuse throttled log-ins, count the failed ones."""

    retry_after: int | None = None

    def clean(self):
        username = self.cleaned_data.get("username")
        if not username or not self.cleaned_data.get("password"):
            return super().clean()  # a missing field: nothing was tried
        address = client_address(self.request) or "unknown"
        limits = (
            (throttle.LOGIN_ADDRESS, address, settings.SWITCHYARD_LOGIN_FAILURES_PER_ADDRESS),
            (throttle.LOGIN_USERNAME, username, settings.SWITCHYARD_LOGIN_FAILURES_PER_USERNAME),
        )
        try:
            waits = [throttle.refusal(kind, who, limit=limit) for kind, who, limit in limits]
        except redis.RedisError:
            logger.warning("login.throttle_unavailable")  # fail open, like the rate limits
            return super().clean()
        if any(waits):
            self.retry_after = max(wait for wait in waits if wait)
            raise ValidationError(
                THROTTLED, code="throttled", params={"minutes": -(-self.retry_after // 60)}
            )
        try:
            cleaned = super().clean()
        except ValidationError as exc:
            if exc.code == "invalid_login":
                self._count_failure(limits, address)
            raise
        try:
            throttle.forget(throttle.LOGIN_USERNAME, username)
        except redis.RedisError:
            logger.warning("login.throttle_unavailable")
        return cleaned

    def _count_failure(self, limits, address: str) -> None:
        window = settings.SWITCHYARD_LOGIN_FAILURE_WINDOW_SECONDS
        try:
            for kind, who, limit in limits:
                verdict = throttle.count_failure(kind, who, limit=limit, window_seconds=window)
                if verdict.failures == limit:
                    # The username is not logged: people type passwords into that field.
                    logger.warning(
                        "login.throttled", extra={"client_address": address, "counter": kind}
                    )
        except redis.RedisError:
            logger.warning("login.failure_not_counted")


class ThrottledAuthenticationForm(ThrottledLoginMixin, AuthenticationForm):
    pass


class ThrottledAdminAuthenticationForm(ThrottledLoginMixin, AdminAuthenticationForm):
    pass


class LoginView(auth_views.LoginView):
    """Django's log-in view; a throttled attempt answers 429 with Retry-After."""

    form_class = ThrottledAuthenticationForm
    redirect_authenticated_user = True

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if form.retry_after:
            response.status_code = 429
            response["Retry-After"] = str(form.retry_after)
        return response
