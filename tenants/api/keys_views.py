"""Management API for the tenant's API keys: list, create (the key is shown once), revoke.

Keys are never deleted (usage records and the audit log name them); a revoked key is refused
on every process within a poll interval. Owners, admins and `manage` keys not bound to an
end user manage them.
"""

from __future__ import annotations

from django.db.models import F, QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.response import Response

from tenants.api.permissions import MANAGER_ROLES, HasRole, HasScope, SeesWholeTenant
from tenants.api.serializers import (
    APIKeyCreatedSerializer,
    APIKeyCreateSerializer,
    APIKeySerializer,
    error_responses,
)
from tenants.api.views import TenantScopedViewSet
from tenants.choices import Scope
from tenants.models import TenantAPIKey
from tenants.selectors import api_keys
from tenants.services import create_api_key_for_end_user, revoke_api_key

FORBIDDEN = "Missing `manage` scope, an end-user-bound key, or neither owner nor admin."
NOT_FOUND = "No such API key (or another tenant's)."


@extend_schema_view(
    list=extend_schema(
        operation_id="api_keys_list",
        summary="API keys",
        description="The tenant's keys, active first, newest first; prefixes only.",
        responses={200: APIKeySerializer(many=True), **error_responses(forbidden=FORBIDDEN)},
    ),
    retrieve=extend_schema(
        operation_id="api_keys_retrieve",
        summary="An API key",
        responses={
            200: APIKeySerializer,
            **error_responses(forbidden=FORBIDDEN, not_found=NOT_FOUND),
        },
    ),
    create=extend_schema(
        operation_id="api_keys_create",
        summary="Create an API key",
        description=(
            "The response's `key` is the only time the key is shown: it is stored as a hash. "
            "Send it as `Authorization: Bearer <key>`."
        ),
        request=APIKeyCreateSerializer,
        responses={
            201: APIKeyCreatedSerializer,
            **error_responses(forbidden=FORBIDDEN, bad_request="Invalid input; nothing saved."),
        },
    ),
    revoke=extend_schema(
        operation_id="api_keys_revoke",
        summary="Revoke an API key",
        description="Its next request is refused (401); revoking twice changes nothing.",
        request=None,
        responses={
            200: APIKeySerializer,
            **error_responses(forbidden=FORBIDDEN, not_found=NOT_FOUND),
        },
    ),
)
@extend_schema(tags=["API keys"])
class APIKeyViewSet(TenantScopedViewSet):
    permission_classes = [HasScope(Scope.MANAGE), HasRole(*MANAGER_ROLES), SeesWholeTenant]
    serializer_class = APIKeySerializer
    lookup_value_converter = "int"

    def tenant_queryset(self) -> QuerySet[TenantAPIKey]:
        return (
            api_keys(tenant=self.tenant)
            .select_related("created_by")
            .order_by(F("revoked_at").desc(nulls_first=True), "-created_at", "-pk")
        )

    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(APIKeySerializer(page, many=True).data)

    def retrieve(self, request, pk: int):
        return Response(APIKeySerializer(self.get_object()).data)

    def create(self, request):
        form = APIKeyCreateSerializer(data=request.data, context={"tenant": self.tenant})
        form.is_valid(raise_exception=True)
        data = form.validated_data
        key, raw = create_api_key_for_end_user(
            tenant=self.tenant,
            name=data["name"],
            actor=self.actor,
            scopes=data["scopes"],
            end_user_external_id=data.get("end_user", ""),
            requests_per_minute=data.get("requests_per_minute"),
        )
        body = APIKeyCreatedSerializer(key, context={"raw_key": raw}).data
        # The key is in this body only: no cache may keep a copy.
        return Response(body, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})

    @action(detail=True, methods=["post"])
    def revoke(self, request, pk: int):
        key = revoke_api_key(key=self.get_object(), actor=self.actor)
        return Response(APIKeySerializer(key).data)
