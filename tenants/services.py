"""Writes for tenants, members, end users and API keys."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from cryptography.fernet import InvalidToken
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from tenants import audit, config_version, crypto
from tenants.choices import DEFAULT_SCOPES, Role, Scope
from tenants.models import AuditLog, EndUser, Membership, Plan, Tenant, TenantAPIKey


class InvalidScope(ValueError):
    pass


def _bump_on_commit(tenant: Tenant | None) -> None:
    tenant_id = tenant.pk if tenant else None
    transaction.on_commit(lambda: config_version.bump(tenant_id=tenant_id))


def create_tenant(*, name: str, slug: str, plan: Plan, actor: Any = None) -> Tenant:
    """A new tenant on `plan`."""
    tenant = Tenant(name=name, slug=slug, plan=plan)
    tenant.full_clean()
    with transaction.atomic():
        tenant.save()
        audit.record(actor=actor, tenant=tenant, action="tenant.created", target=tenant)
    return tenant


def update_tenant(*, tenant: Tenant, actor: Any = None, **fields: Any) -> Tenant:
    """Change plan, status or billing fields of a tenant; audited, config bumped."""
    changes = {}
    for name, value in fields.items():
        old = getattr(tenant, name)
        if old != value:
            changes[name] = [str(old), str(value)]
            setattr(tenant, name, value)
    tenant.full_clean()
    with transaction.atomic():
        tenant.save()
        if changes:
            audit.record(
                actor=actor, tenant=tenant, action="tenant.updated", target=tenant, changes=changes
            )
        _bump_on_commit(tenant)
    return tenant


def add_member(*, tenant: Tenant, user: Any, role: str, actor: Any = None) -> Membership:
    """Give `user` a role in `tenant` (or change it)."""
    with transaction.atomic():
        membership, created = Membership.objects.update_or_create(
            tenant=tenant, user=user, defaults={"role": role}
        )
        audit.record(
            actor=actor,
            tenant=tenant,
            action="member.added" if created else "member.changed",
            target=membership,
            changes={"role": role},
        )
    return membership


def get_or_create_end_user(*, tenant: Tenant, external_id: str) -> EndUser:
    """The tenant's end user named `external_id`, created on first sight (race-safe)."""
    try:
        return EndUser.objects.get(tenant=tenant, external_id=external_id)
    except EndUser.DoesNotExist:
        pass
    try:
        with transaction.atomic():
            return EndUser.objects.create(tenant=tenant, external_id=external_id)
    except IntegrityError:
        return EndUser.objects.get(tenant=tenant, external_id=external_id)


def end_user_for_login(*, tenant: Tenant, user: Any) -> EndUser:
    """The end-user profile of a tenant member (their own keys and settings hang off it)."""
    profile = EndUser.objects.filter(tenant=tenant, user=user).first()
    if profile:
        return profile
    external_id = f"user:{user.get_username()}"
    try:
        with transaction.atomic():
            profile, _ = EndUser.objects.get_or_create(tenant=tenant, external_id=external_id)
            if profile.user_id is None:
                profile.user = user
                profile.save(update_fields=["user"])
    except IntegrityError:
        profile = EndUser.objects.get(tenant=tenant, user=user)
    return profile


def create_api_key(
    *,
    tenant: Tenant,
    name: str,
    actor: Any = None,
    scopes: Sequence[str] | None = None,
    end_user: EndUser | None = None,
    requests_per_minute: int | None = None,
) -> tuple[TenantAPIKey, str]:
    """A new key for `tenant`; returns the row and the raw key, which is never stored."""
    scopes = list(DEFAULT_SCOPES if scopes is None else scopes)
    unknown = set(scopes) - set(Scope.values)
    if unknown:
        raise InvalidScope(f"Unknown scopes: {', '.join(sorted(unknown))}.")
    if end_user is not None and end_user.tenant_id != tenant.pk:
        raise ValueError("The end user belongs to another tenant.")
    raw = TenantAPIKey.generate()
    key = TenantAPIKey(
        tenant=tenant,
        name=name,
        scopes=scopes,
        end_user=end_user,
        requests_per_minute=requests_per_minute,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    key.set_key(raw)
    key.full_clean()
    with transaction.atomic():
        key.save()
        audit.record(
            actor=actor,
            tenant=tenant,
            action="api_key.created",
            target=key,
            changes={"scopes": scopes},
        )
        _bump_on_commit(tenant)
    return key, raw


def revoke_api_key(*, key: TenantAPIKey, actor: Any = None) -> TenantAPIKey:
    """Revoke `key`; its next request is refused on every process within a poll interval."""
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        with transaction.atomic():
            key.save(update_fields=["revoked_at"])
            audit.record(actor=actor, tenant=key.tenant, action="api_key.revoked", target=key)
            _bump_on_commit(key.tenant)
    return key


def create_user(*, username: str, password: str, email: str = "", is_staff: bool = False) -> Any:
    """A login user (get or create; the password is set either way)."""
    User = get_user_model()
    user, _ = User.objects.get_or_create(username=username, defaults={"email": email})
    user.set_password(password)
    user.is_staff = is_staff
    user.is_superuser = is_staff
    user.email = email or user.email
    user.save()
    return user


# Rows read, re-encrypted and written per transaction: short transactions, few round trips.
ROTATION_BATCH_SIZE = 500
logger = logging.getLogger(__name__)


def rotate_encryption_keys(
    *,
    actor: Any = None,
    dry_run: bool = False,
    batch_size: int = ROTATION_BATCH_SIZE,
    report: Callable[[str, int, int], None] | None = None,
) -> int:
    """Re-encrypt every stored secret with the newest key; returns how many were rewritten.

    Values the newest key already opens are left alone, so a second run rewrites nothing.
    Each write is a compare-and-swap on the old ciphertext: a secret replaced meanwhile is
    not overwritten. `report(label, rewritten, unreadable)` is called once per field.
    """
    newest = crypto.fernet(crypto.configured_keys()[:1])
    total = 0
    for model, field_name in crypto.encrypted_fields():
        manager = model._base_manager
        rewritten = unreadable = 0
        last_pk = None
        while True:
            rows = manager.exclude(**{f"{field_name}__isnull": True}).exclude(**{field_name: ""})
            if last_pk is not None:
                rows = rows.filter(pk__gt=last_pk)
            batch = list(rows.order_by("pk").values_list("pk", field_name)[:batch_size])
            if not batch:
                break
            last_pk = batch[-1][0]
            with transaction.atomic():
                for pk, sealed in batch:
                    try:
                        newest.decrypt(sealed.ciphertext.encode())
                        continue  # already under the newest key
                    except InvalidToken:
                        pass
                    try:
                        token = crypto.rotate(sealed.ciphertext)
                    except crypto.DecryptionError:
                        unreadable += 1
                        logger.warning(
                            "encryption.rotate_unreadable",
                            extra={"model": model._meta.label, "field": field_name, "pk": pk},
                        )
                        continue
                    if dry_run:
                        rewritten += 1
                        continue
                    rewritten += manager.filter(pk=pk, **{field_name: sealed}).update(
                        **{field_name: crypto.SealedSecret(token)}
                    )
        if report is not None:
            report(f"{model._meta.label}.{field_name}", rewritten, unreadable)
        total += rewritten
    if total and not dry_run:
        with transaction.atomic():
            audit.record(
                actor=actor, action="encryption_keys.rotated", changes={"rewritten": total}
            )
            transaction.on_commit(lambda: config_version.bump())
    return total


__all__ = [
    "InvalidScope",
    "Role",
    "add_member",
    "create_api_key",
    "create_tenant",
    "create_user",
    "end_user_for_login",
    "get_or_create_end_user",
    "revoke_api_key",
    "rotate_encryption_keys",
    "update_tenant",
]


# --- members and invitations (the members page) ---------------------------------------------
import smtplib  # noqa: E402
from datetime import datetime  # noqa: E402

from django.conf import settings  # noqa: E402
from django.core.mail import send_mail  # noqa: E402
from django.db.models import QuerySet  # noqa: E402
from django.urls import reverse  # noqa: E402

from tenants.models import INVITATION_LIFETIME, Invitation, hash_invitation_token  # noqa: E402


class MembershipRuleError(ValueError):
    """A member change the tenant's rules refuse; the message says why, in the page's words."""


class InvitationError(ValueError):
    """An invitation link that cannot be used; the message says why. `status`: for the page."""

    def __init__(self, message: str, *, status: int = 410) -> None:
        super().__init__(message)
        self.status = status


def _role_in(*, tenant: Tenant, actor: Any) -> str | None:
    if actor is None or not getattr(actor, "is_authenticated", False):
        return None
    return (
        Membership.objects.filter(tenant=tenant, user=actor).values_list("role", flat=True).first()
    )


def _require_owner(*, tenant: Tenant, actor: Any, to: str) -> None:
    """Only owners give or take the owner role; system callers (no actor) and superusers may."""
    if actor is None or getattr(actor, "is_superuser", False):
        return
    if _role_in(tenant=tenant, actor=actor) != Role.OWNER:
        raise MembershipRuleError(f"Only an owner can {to}.")


def _locked_owner_ids(*, tenant: Tenant) -> list[int]:
    """Lock the tenant's owner rows: two owners demoting each other at once cannot both win."""
    return list(
        Membership.objects.select_for_update()
        .filter(tenant=tenant, role=Role.OWNER)
        .values_list("pk", flat=True)
    )


def change_member_role(
    *, tenant: Tenant, membership: Membership, role: str, actor: Any = None
) -> Membership:
    """Give a member another role. Only owners make or unmake owners; the last owner stays."""
    if membership.tenant_id != tenant.pk:
        raise ValueError("The membership belongs to another tenant.")
    if role not in Role.values:
        raise MembershipRuleError("Choose one of the roles.")
    if role == membership.role:
        return membership
    if Role.OWNER in (role, membership.role):
        _require_owner(tenant=tenant, actor=actor, to="make or unmake an owner")
    with transaction.atomic():
        owner_ids = _locked_owner_ids(tenant=tenant)
        locked = Membership.objects.select_for_update().select_related("user").get(pk=membership.pk)
        if locked.role == Role.OWNER and role != Role.OWNER and owner_ids == [locked.pk]:
            raise MembershipRuleError(
                f"{locked.user.get_username()} is the last owner: make another member an owner "
                "first."
            )
        old = locked.role
        locked.role = role
        locked.full_clean()
        locked.save(update_fields=["role"])
        audit.record(
            actor=actor,
            tenant=tenant,
            action="member.role_changed",
            target=locked,
            changes={"role": [old, role]},
        )
    membership.role = role
    return locked


def remove_member(*, tenant: Tenant, membership: Membership, actor: Any = None) -> None:
    """Take a user out of the tenant. Only owners remove owners; the last owner stays."""
    if membership.tenant_id != tenant.pk:
        raise ValueError("The membership belongs to another tenant.")
    if membership.role == Role.OWNER:
        _require_owner(tenant=tenant, actor=actor, to="remove an owner")
    with transaction.atomic():
        owner_ids = _locked_owner_ids(tenant=tenant)
        locked = Membership.objects.select_for_update().select_related("user").get(pk=membership.pk)
        if locked.role == Role.OWNER and owner_ids == [locked.pk]:
            raise MembershipRuleError(
                f"{locked.user.get_username()} is the last owner: a tenant always keeps one."
            )
        audit.record(
            actor=actor,
            tenant=tenant,
            action="member.removed",
            target=locked,
            changes={"user": locked.user.get_username(), "role": locked.role},
        )
        locked.delete()


def invitation_url(raw_token: str) -> str:
    """The absolute link of an invitation (the public URL: emails leave the request behind)."""
    path = reverse("tenants:invitation-accept", kwargs={"token": raw_token})
    return settings.SWITCHYARD_PUBLIC_URL.rstrip("/") + path


def _send_invitation_email(*, invitation: Invitation, url: str, inviter: str) -> None:
    """Runs on commit. A mail server outage must not fail the page: it is logged instead."""
    body = (
        f"{inviter} invited you to join {invitation.tenant.name} on Switchyard as "
        f"{invitation.get_role_display().lower()}.\n\n"
        f"Accept the invitation:\n{url}\n\n"
        f"The link works once and expires on {invitation.expires_at:%Y-%m-%d %H:%M} UTC. "
        "If you did not expect this email, ignore it.\n"
    )
    try:
        send_mail(f"Join {invitation.tenant.name} on Switchyard", body, None, [invitation.email])
    except (OSError, smtplib.SMTPException):
        logger.exception("invitation.email_failed", extra={"invitation_id": invitation.pk})


def invite_member(
    *, tenant: Tenant, email: str, role: str, actor: Any = None, now: datetime | None = None
) -> tuple[Invitation, str]:
    """Invite `email` to `tenant` with `role` and email the link; returns (row, raw token).

    The raw token is only in the email. A new invitation to the same address replaces the
    open one (its link stops working). Only owners invite owners.
    """
    now = now or timezone.now()
    email = email.strip().lower()
    if role not in Role.values:
        raise MembershipRuleError("Choose one of the roles.")
    if role == Role.OWNER:
        _require_owner(tenant=tenant, actor=actor, to="invite an owner")
    if Membership.objects.filter(tenant=tenant, user__email__iexact=email).exists():
        raise MembershipRuleError(f"{email} is already a member of {tenant.name}.")
    raw = Invitation.generate_token()
    is_user = getattr(actor, "is_authenticated", False)
    invitation = Invitation(
        tenant=tenant,
        email=email,
        role=role,
        invited_by=actor if is_user else None,
        expires_at=now + INVITATION_LIFETIME,
    )
    invitation.set_token(raw)
    invitation.full_clean()
    inviter = actor.get_username() if is_user else tenant.name
    url = invitation_url(raw)
    with transaction.atomic():
        Invitation.objects.filter(
            tenant=tenant, email__iexact=email, accepted_at__isnull=True
        ).delete()
        invitation.save()
        audit.record(
            actor=actor,
            tenant=tenant,
            action="member.invited",
            target=invitation,
            changes={"email": email, "role": role},
        )
        transaction.on_commit(
            lambda: _send_invitation_email(invitation=invitation, url=url, inviter=inviter)
        )
    return invitation, raw


def revoke_invitation(*, tenant: Tenant, invitation: Invitation, actor: Any = None) -> None:
    """Withdraw an open invitation: its link stops working."""
    if invitation.tenant_id != tenant.pk:
        raise ValueError("The invitation belongs to another tenant.")
    with transaction.atomic():
        audit.record(
            actor=actor,
            tenant=tenant,
            action="member.invitation_revoked",
            target=invitation,
            changes={"email": invitation.email, "role": invitation.role},
        )
        invitation.delete()


def invitation_for_token(
    *, token: str, now: datetime | None = None, lock: bool = False
) -> Invitation:
    """The open invitation behind a link, or InvitationError saying why it cannot be used.

    A read, kept beside the services that share its checks (lock=True inside their
    transaction, so one link cannot be accepted twice at once).
    """
    now = now or timezone.now()
    rows = Invitation.objects.select_related("tenant", "invited_by")
    if lock:
        rows = rows.select_for_update(of=("self",))
    invitation = rows.filter(token_hash=hash_invitation_token(token)).first()
    if invitation is None or not invitation.tenant.is_active:
        raise InvitationError(
            "This invitation link is not valid: it may have been replaced or withdrawn. "
            "Ask for a new one.",
            status=404,
        )
    if invitation.accepted_at is not None:
        raise InvitationError("This invitation has already been used. Log in to continue.")
    if invitation.is_expired(now):
        raise InvitationError(
            f"This invitation expired on {invitation.expires_at:%Y-%m-%d}. Ask "
            f"{invitation.tenant.name} for a new one."
        )
    return invitation


def _join(*, invitation: Invitation, user: Any, now: datetime) -> tuple[Membership, bool]:
    """Call inside the transaction that locked `invitation`. An existing member keeps the role."""
    membership = Membership.objects.filter(tenant=invitation.tenant, user=user).first()
    joined = membership is None
    if joined:
        membership = Membership(tenant=invitation.tenant, user=user, role=invitation.role)
        membership.full_clean()
        membership.save()
    invitation.accepted_at = now
    invitation.save(update_fields=["accepted_at"])
    audit.record(
        actor=user,
        tenant=invitation.tenant,
        action="member.joined" if joined else "member.invitation_accepted",
        target=membership,
        changes={"email": invitation.email, "role": membership.role},
    )
    return membership, joined


def accept_invitation(
    *, token: str, user: Any, now: datetime | None = None
) -> tuple[Membership, bool]:
    """A logged-in user accepts: (membership, joined); joined is False if already a member."""
    now = now or timezone.now()
    with transaction.atomic():
        invitation = invitation_for_token(token=token, now=now, lock=True)
        return _join(invitation=invitation, user=user, now=now)


def accept_invitation_as_new_user(
    *, token: str, username: str, password: str, now: datetime | None = None
) -> Membership:
    """Create an account (the invited email) and join; nothing is created if the link is bad.

    The password is checked by the caller's form (Django's password validators).
    """
    now = now or timezone.now()
    User = get_user_model()
    with transaction.atomic():
        invitation = invitation_for_token(token=token, now=now, lock=True)
        if User.objects.filter(username__iexact=username).exists():
            raise MembershipRuleError("That username is taken: choose another, or log in.")
        user = User.objects.create_user(
            username=username, email=invitation.email, password=password
        )
        audit.record(actor=user, tenant=invitation.tenant, action="user.signed_up", target=user)
        membership, _ = _join(invitation=invitation, user=user, now=now)
    return membership


def pending_invitations(*, tenant: Tenant) -> QuerySet[Invitation]:
    """The tenant's invitations not yet accepted, newest first (expired ones included, marked
    by `is_expired`). A read beside its services until tenants/selectors.py takes it."""
    return Invitation.objects.filter(tenant=tenant, accepted_at__isnull=True).select_related(
        "invited_by"
    )


def create_api_key_for_end_user(
    *,
    tenant: Tenant,
    name: str,
    actor: Any = None,
    scopes: Sequence[str] | None = None,
    end_user_external_id: str = "",
    requests_per_minute: int | None = None,
) -> tuple[TenantAPIKey, str]:
    """create_api_key, bound to the end user named `end_user_external_id` (created if new)."""
    with transaction.atomic():
        end_user = (
            get_or_create_end_user(tenant=tenant, external_id=end_user_external_id.strip())
            if end_user_external_id.strip()
            else None
        )
        return create_api_key(
            tenant=tenant,
            name=name,
            actor=actor,
            scopes=scopes,
            end_user=end_user,
            requests_per_minute=requests_per_minute,
        )


__all__ += [
    "InvitationError",
    "MembershipRuleError",
    "accept_invitation",
    "accept_invitation_as_new_user",
    "change_member_role",
    "create_api_key_for_end_user",
    "invitation_for_token",
    "invitation_url",
    "invite_member",
    "pending_invitations",
    "remove_member",
    "revoke_invitation",
]


# --- the audit log's own exports ----------------------------------------------------------


def record_audit_export(
    *, actor: Any, tenant: Tenant | None, fmt: str, filters: dict[str, Any]
) -> AuditLog:
    """Note that `actor` exported the audit log (`tenant`'s, or with no tenant the platform's,
    staff's view): reading who did what out of the system is itself worth knowing. Callers
    export the entries older than the returned one."""
    return audit.record(
        actor=actor,
        tenant=tenant,
        action="audit_log.exported",
        changes={"format": fmt, "filters": filters},
    )


__all__ += ["record_audit_export"]
