"""Account pages (home, tenant switcher), the API keys, members and audit log pages, invitations.

Login, logout and password reset are Django's.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import F
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from tenants import crypto
from tenants.api.tenancy import SESSION_TENANT_KEY
from tenants.audit_export import entry_fields
from tenants.choices import Role, Scope
from tenants.context_processors import navigation
from tenants.models import Invitation, Membership, TenantAPIKey
from tenants.page_forms import (
    APIKeyCreateForm,
    AuditFilterForm,
    InviteForm,
    MemberRoleForm,
    SignupForm,
)
from tenants.rbac import MANAGERS, tenant_page
from tenants.selectors import (
    AuditFilters,
    api_keys,
    audit_entries,
    get_api_key,
    members,
    memberships_of,
)
from tenants.services import (
    InvitationError,
    MembershipRuleError,
    accept_invitation,
    accept_invitation_as_new_user,
    change_member_role,
    create_api_key_for_end_user,
    invitation_for_token,
    invite_member,
    pending_invitations,
    remove_member,
    revoke_api_key,
    revoke_invitation,
)


@tenant_page()
def home(request):
    """The usage dashboard when it exists, else the first section the role may see."""
    sections = navigation(request, request.membership.role)
    return redirect(sections[0]["url"]) if sections else render(request, "tenants/home.html")


@login_required
@require_POST
def switch_tenant(request):
    tenant_id = request.POST.get("tenant", "")
    # Anything but a number names no tenant (and must not reach the query as one: a 500).
    membership = (
        memberships_of(user=request.user).filter(tenant_id=int(tenant_id)).first()
        if tenant_id.isascii() and tenant_id.isdigit() and len(tenant_id) < 19
        else None
    )
    if membership is None:
        messages.error(request, "You are not a member of that tenant.")
    else:
        request.session[SESSION_TENANT_KEY] = membership.tenant_id
        messages.success(request, f"Now working in {membership.tenant.name}.")
    target = request.POST.get("next") or reverse("home")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = reverse("home")
    return redirect(target)


# --- API keys page ----------------------------------------------------------------------------


def _scope_names(key: TenantAPIKey) -> list[tuple[str, str]]:
    """(scope, label) pairs of a key; an unknown stored scope shows as itself."""
    labels = dict(Scope.choices)
    return [(scope, labels.get(scope, scope)) for scope in key.scopes or ()]


def _api_key_context(request: HttpRequest, *, form: APIKeyCreateForm | None = None) -> dict:
    keys = list(
        api_keys(tenant=request.tenant)
        .select_related("created_by")
        .order_by(F("revoked_at").desc(nulls_first=True), "-created_at")
    )
    for key in keys:
        key.scope_names = _scope_names(key)
    return {"api_keys": keys, "form": form or APIKeyCreateForm(tenant=request.tenant)}


@tenant_page(MANAGERS)
@require_GET
def api_key_list(request: HttpRequest) -> HttpResponse:
    return render(request, "tenants/api_key_list.html", _api_key_context(request))


# The key just created, between the POST that made it and the GET that shows it, encrypted
# (the session store is a database table) and removed by the GET that shows it.
NEW_API_KEY_SESSION = "api_key_to_show_once"


@tenant_page(MANAGERS)
@require_http_methods(["GET", "POST"])
@never_cache
def api_key_create(request: HttpRequest) -> HttpResponse:
    """POST creates a key and redirects to GET, which shows it once: it is stored as a hash.

    Post/redirect/get: reloading the page that shows the key neither submits the form again
    (a second key) nor shows the key again (it left the session when first shown).
    """
    if request.method == "GET":
        return _show_new_api_key(request)
    form = APIKeyCreateForm(request.POST, tenant=request.tenant)
    if not form.is_valid():
        return render(request, "tenants/api_key_list.html", _api_key_context(request, form=form))
    key, raw = create_api_key_for_end_user(
        tenant=request.tenant,
        name=form.cleaned_data["name"],
        actor=request.user,
        scopes=form.cleaned_data["scopes"],
        end_user_external_id=form.cleaned_data["end_user"],
        requests_per_minute=form.cleaned_data["requests_per_minute"],
    )
    request.session[NEW_API_KEY_SESSION] = {"key_id": key.pk, "sealed": crypto.encrypt(raw)}
    return redirect("tenants:api-key-create")


def _show_new_api_key(request: HttpRequest) -> HttpResponse:
    new = request.session.pop(NEW_API_KEY_SESSION, None)
    try:
        key = get_api_key(tenant=request.tenant, key_id=new["key_id"]) if new else None
        raw = crypto.decrypt(new["sealed"]) if new else None
    except (TenantAPIKey.DoesNotExist, crypto.DecryptionError):  # another tenant's; rotated
        key = raw = None
    if key is None or key.is_revoked:
        messages.warning(
            request,
            "A new key is shown once, right after it is created. "
            "Lost it? Revoke it and create another.",
        )
        return redirect("tenants:api-key-list")
    context = {
        "key": key,
        "raw_key": raw,
        "base_url": settings.SWITCHYARD_PUBLIC_URL.rstrip("/") + "/v1",
        "scope_names": _scope_names(key),
    }
    return render(request, "tenants/api_key_created.html", context)


@tenant_page(MANAGERS)
@require_http_methods(["GET", "POST"])
def api_key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    """GET asks for confirmation; only the POST revokes."""
    try:
        key = get_api_key(tenant=request.tenant, key_id=key_id)
    except TenantAPIKey.DoesNotExist:
        raise Http404("No such API key.") from None
    if request.method == "POST":
        revoke_api_key(key=key, actor=request.user)
        messages.success(request, f"The API key “{key.name}” ({key.prefix}…) is revoked.")
        return redirect("tenants:api-key-list")
    return render(request, "tenants/api_key_confirm_revoke.html", {"key": key})


# --- members page -----------------------------------------------------------------------------


def _members_context(request: HttpRequest, *, invite_form: InviteForm | None = None) -> dict:
    is_owner = request.membership.role == Role.OWNER
    memberships = list(members(tenant=request.tenant))
    owners = sum(1 for m in memberships if m.role == Role.OWNER)
    now = timezone.now()
    return {
        "rows": [
            {
                "membership": m,
                "is_me": m.user_id == request.user.pk,
                "is_last_owner": m.role == Role.OWNER and owners == 1,
                # Admins neither change nor remove owners (the service refuses it too).
                "can_change": is_owner or m.role != Role.OWNER,
            }
            for m in memberships
        ],
        "role_choices": [c for c in Role.choices if is_owner or c[0] != Role.OWNER],
        "invitations": [
            {"invitation": i, "is_expired": i.is_expired(now)}
            for i in pending_invitations(tenant=request.tenant)
        ],
        "invite_form": invite_form or InviteForm(is_owner=is_owner),
    }


def _membership_for(request: HttpRequest, membership_id: int) -> Membership:
    try:
        return members(tenant=request.tenant).get(pk=membership_id)
    except Membership.DoesNotExist:
        raise Http404("No such member.") from None


@tenant_page(MANAGERS)
@require_GET
def member_list(request: HttpRequest) -> HttpResponse:
    return render(request, "tenants/member_list.html", _members_context(request))


@tenant_page(MANAGERS)
@require_POST
def member_invite(request: HttpRequest) -> HttpResponse:
    is_owner = request.membership.role == Role.OWNER
    form = InviteForm(request.POST, is_owner=is_owner)
    if form.is_valid():
        try:
            invitation, _ = invite_member(
                tenant=request.tenant,
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                actor=request.user,
            )
        except MembershipRuleError as exc:
            form.add_error("email", str(exc))
        else:
            messages.success(
                request,
                f"Invitation sent to {invitation.email} as "
                f"{invitation.get_role_display().lower()}; the link works for 7 days.",
            )
            if request.headers.get("HX-Request"):
                # The list and the message are on the whole page: htmx loads it afresh.
                return HttpResponse(
                    status=204, headers={"HX-Redirect": reverse("tenants:member-list")}
                )
            return redirect("tenants:member-list")
    if not request.headers.get("HX-Request"):
        # Without htmx the whole page comes back, scrolled to its top: say it there too.
        messages.error(request, "No invitation was sent: see the form below.")
    context = _members_context(request, invite_form=form)
    return render(request, "tenants/member_list.html", context)


@tenant_page(MANAGERS)
@require_POST
def member_role(request: HttpRequest, membership_id: int) -> HttpResponse:
    membership = _membership_for(request, membership_id)
    form = MemberRoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose one of the roles.")
        return redirect("tenants:member-list")
    try:
        change_member_role(
            tenant=request.tenant,
            membership=membership,
            role=form.cleaned_data["role"],
            actor=request.user,
        )
    except MembershipRuleError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            f"{membership.user.get_username()} is now {membership.get_role_display().lower()}.",
        )
    if membership.user_id == request.user.pk and membership.role not in MANAGERS:
        return redirect("home")  # demoted themself: this page is no longer theirs
    return redirect("tenants:member-list")


@tenant_page(MANAGERS)
@require_http_methods(["GET", "POST"])
def member_remove(request: HttpRequest, membership_id: int) -> HttpResponse:
    """GET asks for confirmation; only the POST removes."""
    membership = _membership_for(request, membership_id)
    is_me = membership.user_id == request.user.pk
    if request.method == "POST":
        try:
            remove_member(tenant=request.tenant, membership=membership, actor=request.user)
        except MembershipRuleError as exc:
            messages.error(request, str(exc))
            return redirect("tenants:member-list")
        if is_me:
            messages.success(request, f"You left {request.tenant.name}.")
            return redirect("home")
        messages.success(
            request, f"{membership.user.get_username()} is no longer in {request.tenant.name}."
        )
        return redirect("tenants:member-list")
    return render(
        request, "tenants/member_confirm_remove.html", {"membership": membership, "is_me": is_me}
    )


@tenant_page(MANAGERS)
@require_http_methods(["GET", "POST"])
def invitation_revoke(request: HttpRequest, invitation_id: int) -> HttpResponse:
    """GET asks for confirmation; only the POST withdraws the invitation."""
    try:
        invitation = pending_invitations(tenant=request.tenant).get(pk=invitation_id)
    except Invitation.DoesNotExist:
        raise Http404("No such invitation.") from None
    if request.method == "POST":
        revoke_invitation(tenant=request.tenant, invitation=invitation, actor=request.user)
        messages.success(request, f"The invitation to {invitation.email} is withdrawn.")
        return redirect("tenants:member-list")
    return render(request, "tenants/invitation_confirm_revoke.html", {"invitation": invitation})


# --- accepting an invitation (no tenant yet: not a tenant page) -------------------------------


def _invitation_refused(request: HttpRequest, exc: InvitationError) -> HttpResponse:
    return render(
        request, "tenants/invitation_invalid.html", {"reason": str(exc)}, status=exc.status
    )


def _welcome(request: HttpRequest, membership: Membership, *, joined: bool) -> HttpResponse:
    request.session[SESSION_TENANT_KEY] = membership.tenant_id
    if joined:
        role = membership.get_role_display().lower()
        messages.success(request, f"Welcome to {membership.tenant.name}: you joined as {role}.")
    else:
        messages.info(request, f"You already belong to {membership.tenant.name}.")
    return redirect("home")


@never_cache
@require_http_methods(["GET", "POST"])
def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    """Signed in: one button joins. Not signed in: create an account (or log in) and join."""
    try:
        invitation = invitation_for_token(token=token)
    except InvitationError as exc:
        return _invitation_refused(request, exc)
    context: dict = {"invitation": invitation}
    if request.user.is_authenticated:
        if request.method == "POST":
            try:
                membership, joined = accept_invitation(token=token, user=request.user)
            except InvitationError as exc:
                return _invitation_refused(request, exc)
            return _welcome(request, membership, joined=joined)
        return render(request, "tenants/invitation_accept.html", context)
    form = SignupForm(request.POST or None, email=invitation.email)
    if request.method == "POST" and form.is_valid():
        try:
            membership = accept_invitation_as_new_user(
                token=token,
                username=form.cleaned_data["username"],
                password=form.cleaned_data["password1"],
            )
        except InvitationError as exc:
            return _invitation_refused(request, exc)
        except MembershipRuleError as exc:
            form.add_error("username", str(exc))
        else:
            login(request, membership.user, backend="django.contrib.auth.backends.ModelBackend")
            return _welcome(request, membership, joined=True)
    context["form"] = form
    return render(request, "tenants/invitation_accept.html", context)


# --- audit log page ---------------------------------------------------------------------------

AUDIT_PAGE_SIZE = 50


def _audit_filters(form: AuditFilterForm) -> tuple[AuditFilters, dict[str, str]]:
    """The selector's filters and the same as the API's query (for the CSV link)."""
    if not form.is_valid():
        return AuditFilters(), {}
    data = form.cleaned_data
    since = until = None
    query: dict[str, str] = {}
    if data["action"]:
        query["action"] = data["action"]
    if data["since"]:
        since = datetime.combine(data["since"], time.min, tzinfo=UTC)
        query["since"] = since.isoformat()
    if data["until"]:  # "To" includes its day
        until = datetime.combine(data["until"] + timedelta(days=1), time.min, tzinfo=UTC)
        query["until"] = until.isoformat()
    return AuditFilters(action=data["action"], since=since, until=until), query


@tenant_page(MANAGERS)
@require_GET
def audit_log(request: HttpRequest) -> HttpResponse:
    """The tenant's audit entries, newest first, filtered; the CSV export is the API's."""
    form = AuditFilterForm(request.GET or None)
    filters, query = _audit_filters(form)
    page = Paginator(audit_entries(tenant=request.tenant, filters=filters), AUDIT_PAGE_SIZE)
    entries = page.get_page(request.GET.get("page"))
    rows = [
        {
            **entry_fields(entry, for_tenant=True),
            "changes_text": json.dumps(entry.changes, ensure_ascii=False, sort_keys=True)
            if entry.changes
            else "",
        }
        for entry in entries
    ]
    csv_url = reverse("tenants-api:audit-log-list") + "?" + urlencode({**query, "format": "csv"})
    page_query = urlencode({k: v for k, v in request.GET.items() if k != "page"})
    context = {
        "form": form,
        "entries": entries,
        "rows": rows,
        "csv_url": csv_url,
        "page_query": page_query,
    }
    return render(request, "tenants/audit_log.html", context)
