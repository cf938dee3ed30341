"""Management API for the tenant's members and invitations.

Owners, admins and `manage` keys not bound to an end user manage them; the services keep the
rules (only owners make, unmake, invite or remove owners; the last owner stays).
"""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from tenants.api.permissions import MANAGER_ROLES, HasRole, HasScope, SeesWholeTenant
from tenants.api.serializers import (
    InvitationSerializer,
    InviteSerializer,
    MemberRoleSerializer,
    MemberSerializer,
    error_responses,
)
from tenants.api.views import TenantScopedViewSet
from tenants.choices import Role, Scope
from tenants.models import Invitation, Membership
from tenants.selectors import members
from tenants.services import (
    change_member_role,
    invite_member,
    pending_invitations,
    remove_member,
    revoke_invitation,
)

FORBIDDEN = (
    "Missing `manage` scope, an end-user-bound key, neither owner nor admin, or a change "
    "to an owner by someone who is not one."
)
RULES = "Invalid input, or a rule refused it (e.g. the last owner); nothing changed."


class _ManageMembers(TenantScopedViewSet):
    permission_classes = [HasScope(Scope.MANAGE), HasRole(*MANAGER_ROLES), SeesWholeTenant]
    lookup_value_converter = "int"

    @property
    def is_owner(self) -> bool:
        membership = self.request.membership
        return membership is not None and membership.role == Role.OWNER

    def require_owner_for(self, *roles: str, to: str) -> None:
        """Only owners give or take the owner role (API keys never do)."""
        if Role.OWNER in roles and not self.is_owner:
            raise PermissionDenied(f"Only an owner can {to}.")


@extend_schema_view(
    list=extend_schema(
        operation_id="members_list",
        summary="Members",
        responses={200: MemberSerializer(many=True), **error_responses(forbidden=FORBIDDEN)},
    ),
    retrieve=extend_schema(
        operation_id="members_retrieve",
        summary="A member",
        responses={
            200: MemberSerializer,
            **error_responses(forbidden=FORBIDDEN, not_found="No such member."),
        },
    ),
    partial_update=extend_schema(
        operation_id="members_change_role",
        summary="Change a member's role",
        request=MemberRoleSerializer,
        responses={
            200: MemberSerializer,
            **error_responses(forbidden=FORBIDDEN, not_found="No such member.", bad_request=RULES),
        },
    ),
    destroy=extend_schema(
        operation_id="members_remove",
        summary="Remove a member",
        description="Takes the user out of the tenant (removing yourself is leaving). A "
        "tenant always keeps one owner.",
        responses={
            204: None,
            **error_responses(forbidden=FORBIDDEN, not_found="No such member.", bad_request=RULES),
        },
    ),
    invite=extend_schema(
        operation_id="members_invite",
        summary="Invite someone",
        description="Emails a link (valid for 7 days) that makes its reader a member with "
        "`role`. A new invitation to the same address replaces the open one.",
        request=InviteSerializer,
        responses={
            201: InvitationSerializer,
            **error_responses(forbidden=FORBIDDEN, bad_request=RULES),
        },
    ),
)
@extend_schema(tags=["members"])
class MemberViewSet(_ManageMembers):
    serializer_class = MemberSerializer

    def tenant_queryset(self) -> QuerySet[Membership]:
        return members(tenant=self.tenant).order_by("user__username", "pk")

    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(MemberSerializer(page, many=True).data)

    def retrieve(self, request, pk: int):
        return Response(MemberSerializer(self.get_object()).data)

    def partial_update(self, request, pk: int):
        membership = self.get_object()
        form = MemberRoleSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        role = form.validated_data["role"]
        if role != membership.role:
            self.require_owner_for(role, membership.role, to="make or unmake an owner")
        membership = change_member_role(
            tenant=self.tenant, membership=membership, role=role, actor=self.actor
        )
        return Response(MemberSerializer(membership).data)

    def destroy(self, request, pk: int):
        membership = self.get_object()
        self.require_owner_for(membership.role, to="remove an owner")
        remove_member(tenant=self.tenant, membership=membership, actor=self.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @action(detail=False, methods=["post"])
    def invite(self, request):
        form = InviteSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        role = form.validated_data["role"]
        self.require_owner_for(role, to="invite an owner")
        invitation, _ = invite_member(
            tenant=self.tenant,
            email=form.validated_data["email"],
            role=role,
            actor=self.actor,
        )
        return Response(InvitationSerializer(invitation).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    list=extend_schema(
        operation_id="invitations_list",
        summary="Open invitations",
        description="Invitations not yet accepted, newest first (expired ones included).",
        responses={200: InvitationSerializer(many=True), **error_responses(forbidden=FORBIDDEN)},
    ),
    destroy=extend_schema(
        operation_id="invitations_revoke",
        summary="Withdraw an invitation",
        description="Its link stops working.",
        responses={
            204: None,
            **error_responses(forbidden=FORBIDDEN, not_found="No such open invitation."),
        },
    ),
)
@extend_schema(tags=["members"])
class InvitationViewSet(_ManageMembers):
    serializer_class = InvitationSerializer

    def tenant_queryset(self) -> QuerySet[Invitation]:
        return pending_invitations(tenant=self.tenant).order_by("-created_at", "-pk")

    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(InvitationSerializer(page, many=True).data)

    def destroy(self, request, pk: int):
        revoke_invitation(tenant=self.tenant, invitation=self.get_object(), actor=self.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)
