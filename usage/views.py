"""Tenant pages of usage: the usage dashboard and the spending page (caps, credits, alerts).

Everyone in a tenant may look at both; a member sees only their own end user's usage, cap
and alerts, and neither the ledger nor other end users' caps (as in the management API).
Owners and admins change caps, through usage.services.set_spending_cap, the service the API
and the admin use: validated, audited, and live on the next request (config version bump).
The dashboard reads hourly rollups (usage.dashboard), and raw records only for the hours the
rollups do not hold yet.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from tenants.choices import Role
from tenants.models import EndUser, Tenant
from tenants.rbac import EVERYONE, MANAGERS, USERS, tenant_page
from tenants.selectors import api_keys, end_users
from tenants.services import end_user_for_login, get_or_create_end_user
from usage import charts, selectors
from usage.choices import CapMode, CapScope
from usage.dashboard import (
    DEFAULT_PERIOD,
    PERIODS,
    Scope,
    Window,
    dashboard_window,
    has_usage,
    usage_dashboard,
)
from usage.models import SpendingCap
from usage.page_forms import CapForm, DashboardFilters, UserCapForm
from usage.periods import period_bounds
from usage.services import mark_alerts_read, set_spending_cap

LEDGER_PAGE_SIZE = 20
ALERTS_PAGE_SIZE = 10
USER_CAPS_PAGE_SIZE = 20
# limit_status levels -> how a meter and a badge show them.
METER_CLASS = {"healthy": "", "normal": "", "warning": "warn", "critical": "bad"}
BADGE_CLASS = {"healthy": "ok", "normal": "ok", "warning": "warn", "critical": "bad"}


def _my_end_user(request: HttpRequest) -> EndUser:
    """The member's end-user profile, linked on first use as the API and the playground do,
    so requests sent as `user:<username>` count as theirs."""
    return end_user_for_login(tenant=request.tenant, user=request.user)


def _sees_whole_tenant(request: HttpRequest) -> bool:
    return request.membership.role != Role.MEMBER


# --- usage dashboard --------------------------------------------------------------------------


@tenant_page(EVERYONE)
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    """Requests, errors, tokens, cost and latency of a period, up to now."""
    tenant = request.tenant
    now = timezone.now()
    sees_all = _sees_whole_tenant(request)
    form = DashboardFilters(request.GET)
    is_valid = form.is_valid()
    data = form.cleaned_data if is_valid else {}
    window = dashboard_window(
        period=data.get("period", DEFAULT_PERIOD),
        now=now,
        billing_day=tenant.billing_day,
        first_day=data.get("start"),
        last_day=data.get("end"),
    )
    keys = list(api_keys(tenant=tenant).order_by("name", "pk")) if sees_all else []
    scope, notes = _dashboard_scope(request, form, data, keys, matches_nothing=not is_valid)
    report = usage_dashboard(tenant_id=tenant.pk, window=window, scope=scope, now=now)
    never_used = (
        report.is_empty and not scope.matches_nothing and not has_usage(tenant_id=tenant.pk)
    )
    context = {
        "form": form,
        "report": report,
        "window": window,
        "window_text": charts.window_text(window),
        "periods": PERIODS.items(),
        # As asked, even when invalid: custom dates to correct stay on screen.
        "period": data.get("period") or _asked_period(form),
        "sees_all": sees_all,
        "api_keys": keys,
        "notes": notes,
        "never_used": never_used,
        "tiles": charts.dashboard_tiles(report),
        "charts": charts.dashboard_charts(report) if report.totals.attempts else None,
        "csv_url": _csv_url(window, data if is_valid else {}, sees_all=sees_all),
        "public_url": settings.SWITCHYARD_PUBLIC_URL.rstrip("/"),
    }
    return render(request, "usage/dashboard.html", context)


def _asked_period(form: DashboardFilters) -> str:
    asked = form.data.get("period")
    return asked if asked in PERIODS else DEFAULT_PERIOD


def _dashboard_scope(
    request: HttpRequest,
    form: DashboardFilters,
    data: dict,
    keys: list,
    *,
    matches_nothing: bool,
) -> tuple[Scope, list[str]]:
    """The filters as a Scope of this tenant's ids; a value naming something that is not
    the tenant's matches nothing (it is never looked up elsewhere)."""
    notes = []
    end_user_id = None
    api_key_id = data.get("api_key")
    if not _sees_whole_tenant(request):
        # A member sees their own end user's usage, whatever the URL says.
        end_user_id = _my_end_user(request).pk
        api_key_id = None
    elif data.get("end_user"):
        end_user_id = (
            end_users(tenant=request.tenant)
            .filter(external_id=data["end_user"])
            .values_list("pk", flat=True)
            .first()
        )
        if end_user_id is None:
            notes.append(f"No end user “{data['end_user']}” has sent a request yet.")
            matches_nothing = True
    if api_key_id is not None and api_key_id not in {key.pk for key in keys}:
        form.add_error("api_key", "Choose one of this tenant's API keys.")
        matches_nothing = True
        api_key_id = None
    scope = Scope(
        end_user_id=end_user_id,
        api_key_id=api_key_id,
        provider_id=data.get("provider"),
        model_id=data.get("model"),
        matches_nothing=matches_nothing,
    )
    return scope, notes


def _csv_url(window: Window, data: dict, *, sees_all: bool) -> str:
    """The CSV export of the same filters, over the whole UTC days the window touches."""
    query: dict[str, Any] = {"start": window.first_day, "end": window.last_day}
    if sees_all:
        for name in ("end_user", "api_key"):
            if data.get(name):
                query[name] = data[name]
    for name in ("provider", "model"):
        if data.get(name):
            query[name] = data[name]
    return f"{reverse('usage-api:usage-export')}?{urlencode(query)}"


# --- spending page ----------------------------------------------------------------------------


def _cap_initial(cap: SpendingCap | None) -> dict[str, Any]:
    if cap is None:
        return {}
    return {
        "amount_usd": cap.amount_usd,
        "mode": cap.mode,
        "alert_thresholds": cap.alert_thresholds,
        "is_enabled": cap.is_enabled,
    }


def _meter(spent: Decimal, cap: Decimal, level: str) -> dict[str, Any]:
    if cap > 0:
        percent = min(Decimal(100), spent * 100 / cap)
    else:
        percent = Decimal(100) if spent > 0 else Decimal(0)
    return {
        "percent": f"{percent:.1f}",
        "css": METER_CLASS.get(level, ""),
        "badge": BADGE_CLASS.get(level, ""),
        "level": level,
        "spent": charts.format_cents(spent),
    }


def _user_cap_row(cap: SpendingCap, spent: Decimal) -> dict[str, Any]:
    return {
        "cap": cap,
        "meter": _meter(spent, cap.amount_usd, selectors.usage_level(spent, cap.amount_usd)),
    }


def _alert_rows(request: HttpRequest, alerts, my_end_user: EndUser | None) -> list[dict]:
    role = request.membership.role
    return [
        {
            "alert": alert,
            "can_mark": alert.read_at is None
            and (
                role in MANAGERS
                or (role == Role.MEMBER and my_end_user and alert.end_user_id == my_end_user.pk)
            ),
        }
        for alert in alerts
    ]


def _spending_page(
    request: HttpRequest, *, forms: dict[str, Any] | None = None, status: int = 200
) -> HttpResponse:
    tenant: Tenant = request.tenant
    now = timezone.now()
    sees_all = _sees_whole_tenant(request)
    my_end_user = None if sees_all else _my_end_user(request)
    start, end = period_bounds(tenant.billing_day, now)

    limits = selectors.limit_status(tenant=tenant, end_user=my_end_user, now=now)
    credits = next((e for e in limits if e["kind"] == "credits"), None)
    cap_status = {e["name"]: e for e in limits if e["kind"] == "spending_cap"}
    meters = {
        name: _meter(e["spent_usd"], e["cap_usd"], e["level"]) for name, e in cap_status.items()
    }
    caps = {
        cap.scope: cap
        for cap in selectors.spending_caps(tenant_id=tenant.pk).exclude(scope=CapScope.USER)
    }
    forms = forms or {}
    context: dict[str, Any] = {
        "sees_all": sees_all,
        "period_start": start.date(),
        "period_last_day": (end - timedelta(days=1)).date(),
        "period_end": end.date(),
        "tenant_cap": caps.get(CapScope.TENANT),
        "each_user_cap": caps.get(CapScope.EACH_USER),
        "tenant_meter": meters.get("spending-cap-tenant"),
        "my_meter": meters.get("spending-cap-end-user"),
        "my_cap_status": cap_status.get("spending-cap-end-user"),
        "my_end_user": my_end_user,
        "tenant_form": forms.get("tenant")
        or CapForm(prefix="tenant", initial=_cap_initial(caps.get(CapScope.TENANT))),
        "each_form": forms.get("each")
        or CapForm(prefix="each", initial=_cap_initial(caps.get(CapScope.EACH_USER))),
        "user_form": forms.get("user") or UserCapForm(prefix="user"),
        "prepaid": tenant.plan.prepaid,
    }

    alerts = selectors.alerts_for(
        tenant=tenant,
        end_user_id=my_end_user.pk if my_end_user else None,
        whole_tenant=sees_all,
    )
    alert_page = Paginator(alerts, ALERTS_PAGE_SIZE).get_page(request.GET.get("alerts"))
    context["alert_page"] = alert_page
    context["alert_rows"] = _alert_rows(request, alert_page.object_list, my_end_user)
    context["unread_alerts"] = alerts.filter(read_at__isnull=True).count()
    context["can_mark_any"] = any(row["can_mark"] for row in context["alert_rows"])

    if sees_all:
        cap_page = Paginator(
            selectors.end_user_caps(tenant_id=tenant.pk), USER_CAPS_PAGE_SIZE
        ).get_page(request.GET.get("caps"))
        spent = selectors.end_user_cap_spend(tenant=tenant, caps=cap_page.object_list, now=now)
        context["cap_page"] = cap_page
        context["user_cap_rows"] = [
            _user_cap_row(cap, spent.get(cap.end_user_id, Decimal(0)))
            for cap in cap_page.object_list
        ]
        ledger = selectors.credit_entries(tenant_id=tenant.pk).order_by("-created_at", "-pk")
        context["ledger_page"] = Paginator(ledger, LEDGER_PAGE_SIZE).get_page(
            request.GET.get("ledger")
        )
        context["balance"] = (
            credits["balance_usd"] if credits else selectors.credit_balance(tenant_id=tenant.pk)
        )
    elif credits:
        context["balance"] = credits["balance_usd"]
    return render(request, "usage/spending.html", context, status=status)


@tenant_page(EVERYONE)
@require_GET
def spending(request: HttpRequest) -> HttpResponse:
    """Caps and where this period stands against them, credits and the ledger, alerts."""
    return _spending_page(request)


def _save_cap(
    request: HttpRequest,
    form: CapForm,
    *,
    scope: str,
    end_user: EndUser | None = None,
    end_user_external_id: str | None = None,
) -> SpendingCap | None:
    """Save the form's cap through the service; its objections go on the form (and nothing,
    not even a new end user, is saved)."""
    data = form.cleaned_data
    try:
        with transaction.atomic():
            if end_user_external_id is not None:
                end_user = get_or_create_end_user(
                    tenant=request.tenant, external_id=end_user_external_id
                )
            return set_spending_cap(
                tenant=request.tenant,
                scope=scope,
                end_user=end_user,
                amount_usd=data["amount_usd"],
                mode=data["mode"],
                alert_thresholds=data["alert_thresholds"],
                is_enabled=data["is_enabled"],
                actor=request.user,
            )
    except ValidationError as exc:
        form.add_error(None, exc.messages)
    except ValueError as exc:
        form.add_error(None, str(exc))
    return None


def _describe(cap: SpendingCap) -> str:
    state = "" if cap.is_enabled else " (disabled)"
    mode = "hard: requests are refused at it" if cap.mode == CapMode.HARD else "soft: alerts only"
    return f"${cap.amount_usd} a month, {mode}{state}"


FORM_NAMES = {
    "tenant": "the tenant's cap",
    "each": "the default cap of each end user",
    "user": "the end user's cap",
}


def _refused(request: HttpRequest, forms: dict[str, Any]) -> HttpResponse:
    """The page again, with the refused form and its errors; the page says where it is."""
    (name,) = forms
    messages.error(request, f"Nothing was saved: see {FORM_NAMES[name]} below.")
    return _spending_page(request, forms=forms, status=400)


@tenant_page(MANAGERS)
@require_POST
def tenant_cap(request: HttpRequest) -> HttpResponse:
    form = CapForm(request.POST, prefix="tenant")
    if form.is_valid() and (cap := _save_cap(request, form, scope=CapScope.TENANT)):
        messages.success(
            request,
            f"The cap of {request.tenant.name} is saved: {_describe(cap)}. "
            "The next request uses it.",
        )
        return redirect(reverse("usage:spending") + "#tenant-cap")
    return _refused(request, {"tenant": form})


@tenant_page(MANAGERS)
@require_POST
def each_user_cap(request: HttpRequest) -> HttpResponse:
    form = CapForm(request.POST, prefix="each")
    if form.is_valid() and (cap := _save_cap(request, form, scope=CapScope.EACH_USER)):
        messages.success(request, f"The default cap of each end user is saved: {_describe(cap)}.")
        return redirect(reverse("usage:spending") + "#each-user-cap")
    return _refused(request, {"each": form})


@tenant_page(MANAGERS)
@require_POST
def user_cap_add(request: HttpRequest) -> HttpResponse:
    """Set one end user's cap (a new one, or the one they have)."""
    form = UserCapForm(request.POST, prefix="user")
    if form.is_valid():
        external_id = form.cleaned_data["end_user"]
        cap = _save_cap(request, form, scope=CapScope.USER, end_user_external_id=external_id)
        if cap is not None:
            messages.success(
                request, f"The cap of end user {external_id} is saved: {_describe(cap)}."
            )
            return redirect(reverse("usage:spending") + "#user-caps")
    return _refused(request, {"user": form})


def _user_cap_for(request: HttpRequest, cap_id: int) -> SpendingCap:
    try:
        return selectors.get_end_user_cap(tenant_id=request.tenant.pk, cap_id=cap_id)
    except SpendingCap.DoesNotExist:
        raise Http404("No such cap.") from None


@tenant_page(MANAGERS)
@require_http_methods(["GET", "POST"])
def user_cap_edit(request: HttpRequest, cap_id: int) -> HttpResponse:
    cap = _user_cap_for(request, cap_id)
    if request.method == "POST":
        form = CapForm(request.POST, prefix="cap")
        if form.is_valid() and (
            saved := _save_cap(request, form, scope=CapScope.USER, end_user=cap.end_user)
        ):
            messages.success(
                request, f"The cap of end user {cap.end_user} is saved: {_describe(saved)}."
            )
            return redirect(reverse("usage:spending") + "#user-caps")
        status = 400
    else:
        form = CapForm(prefix="cap", initial=_cap_initial(cap))
        status = 200
    return render(request, "usage/user_cap_edit.html", {"cap": cap, "form": form}, status=status)


@tenant_page(MANAGERS)
@require_POST
def user_cap_set_enabled(request: HttpRequest, cap_id: int) -> HttpResponse:
    """Enable or disable one end user's cap; an htmx request gets the cap's row back."""
    cap = _user_cap_for(request, cap_id)
    enabled = request.POST.get("enabled") == "1"
    cap = set_spending_cap(
        tenant=request.tenant,
        scope=cap.scope,
        end_user=cap.end_user,
        amount_usd=cap.amount_usd,
        mode=cap.mode,
        is_enabled=enabled,
        actor=request.user,
    )
    if request.headers.get("HX-Request"):
        spent = selectors.end_user_cap_spend(tenant=request.tenant, caps=[cap], now=timezone.now())
        row = _user_cap_row(cap, spent.get(cap.end_user_id, Decimal(0)))
        return render(request, "usage/_user_cap_row.html", {"row": row, "can_manage": True})
    state = "enabled" if enabled else "disabled: it no longer applies"
    messages.success(request, f"The cap of end user {cap.end_user} is {state}.")
    return redirect(reverse("usage:spending") + "#user-caps")


@tenant_page(USERS)
@require_POST
def alerts_read(request: HttpRequest) -> HttpResponse:
    """Mark alerts read: owners and admins any of the tenant's, a member those about them."""
    tenant = request.tenant
    if request.membership.role in MANAGERS:
        markable = selectors.alerts_for(tenant=tenant, end_user_id=None, whole_tenant=True)
    else:
        markable = selectors.alerts_for(
            tenant=tenant, end_user_id=_my_end_user(request).pk, whole_tenant=False
        ).filter(end_user__isnull=False)
    if request.POST.get("all") == "1":
        ids = set(markable.filter(read_at__isnull=True).values_list("pk", flat=True))
    else:
        try:
            wanted = {int(value) for value in request.POST.getlist("alert")}
        except ValueError:
            raise Http404("No such alert.") from None
        if not wanted:
            messages.info(request, "No alert was chosen.")
            return redirect(reverse("usage:spending") + "#alerts")
        ids = set(markable.filter(pk__in=wanted).values_list("pk", flat=True))
        if ids != wanted:
            raise Http404("No such alert.")
    count = mark_alerts_read(tenant=tenant, alert_ids=ids, actor=request.user)
    messages.success(request, f"{count} alert{'s' if count != 1 else ''} marked as read.")
    return redirect(reverse("usage:spending") + "#alerts")
