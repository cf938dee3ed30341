"""Management API for provider keys (BYOK): the tenant's keys and the caller's own; and,
for staff, the providers themselves.

Owners, admins and `manage` API keys not bound to an end user manage the tenant's keys;
members manage their own (an end-user-bound key, its end user's). A key is checked with a
small live request before it is saved or its secret replaced, exactly as on the keys page:
a key the provider refuses is never stored. No response carries a secret, only its mask.
"""

from __future__ import annotations

import logging
from functools import cached_property

from django.db import transaction
from django.db.models import QuerySet
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.response import Response

from providers import selectors, services
from providers.api.serializers import (
    ProviderCreateSerializer,
    ProviderKeyCheckedSerializer,
    ProviderKeyCreateSerializer,
    ProviderKeyReplaceSerializer,
    ProviderKeySerializer,
    ProviderKeyUpdateSerializer,
    ProviderQuerySerializer,
    ProviderSerializer,
    ProviderUpdateSerializer,
)
from providers.choices import KeyScope
from providers.models import Provider, ProviderKey
from providers.validation import ValidationResult

# The page's live check (the same model choice and fallback to the models list), so a key
# the page accepts the API accepts too.
from providers.views import live_check
from tenants.api.permissions import USER_ROLES, HasRole, HasScope
from tenants.api.serializers import STAFF_BAD, STAFF_ERRORS, ErrorSerializer, error_responses
from tenants.api.views import StaffViewSet, TenantScopedViewSet
from tenants.choices import Scope
from tenants.models import EndUser
from tenants.selectors import end_users
from tenants.services import end_user_for_login, get_or_create_end_user

logger = logging.getLogger(__name__)

TAGS = ["provider keys"]
FORBIDDEN = (
    "Missing `manage` scope; a viewer; or a member (or end-user-bound key) changing the "
    "tenant's keys."
)
NOT_FOUND = "No such key: another tenant's, or another user's own key."


@extend_schema_view(
    list=extend_schema(
        operation_id="provider_keys_list",
        summary="Provider keys",
        description=(
            "The tenant's provider keys and the caller's own (scope `user`), masked. A "
            "signed-in user sees their own keys; an end-user-bound API key its end user's; an "
            "API key not bound to one names an end user with `end_user` to see theirs."
        ),
        parameters=[
            OpenApiParameter(
                "end_user",
                str,
                description="Only for API keys not bound to an end user: also list this end "
                "user's own keys.",
            )
        ],
        responses={200: ProviderKeySerializer(many=True), **error_responses(forbidden=FORBIDDEN)},
    ),
    retrieve=extend_schema(
        operation_id="provider_keys_retrieve",
        summary="A provider key",
        responses={
            200: ProviderKeySerializer,
            **error_responses(forbidden=FORBIDDEN, not_found=NOT_FOUND),
        },
    ),
    create=extend_schema(
        operation_id="provider_keys_create",
        summary="Add a provider key",
        description=(
            "Checks the secret with a 5-token request on the provider's cheapest chat model "
            "(or its models list) first; if the provider refuses it, nothing is saved and the "
            "answer is a 400 saying why. An accepted key is stored encrypted and active."
        ),
        request=ProviderKeyCreateSerializer,
        responses={
            201: ProviderKeyCheckedSerializer,
            **error_responses(
                forbidden=FORBIDDEN,
                bad_request="Invalid input, or the provider refused the key (nothing saved).",
            ),
        },
    ),
    partial_update=extend_schema(
        operation_id="provider_keys_update",
        summary="Rename, enable or disable a provider key",
        request=ProviderKeyUpdateSerializer,
        responses={
            200: ProviderKeySerializer,
            **error_responses(
                forbidden=FORBIDDEN, not_found=NOT_FOUND, bad_request="Invalid input."
            ),
        },
    ),
    destroy=extend_schema(
        operation_id="provider_keys_delete",
        summary="Delete a provider key",
        responses={204: None, **error_responses(forbidden=FORBIDDEN, not_found=NOT_FOUND)},
    ),
    replace=extend_schema(
        operation_id="provider_keys_replace",
        summary="Replace a provider key's secret",
        description=(
            "The new secret is checked live first; if the provider refuses it the stored key "
            "is unchanged (400)."
        ),
        request=ProviderKeyReplaceSerializer,
        responses={
            200: ProviderKeyCheckedSerializer,
            **error_responses(
                forbidden=FORBIDDEN,
                not_found=NOT_FOUND,
                bad_request="Invalid input, or the provider refused the secret (unchanged).",
            ),
        },
    ),
)
@extend_schema(tags=TAGS)
class ProviderKeyViewSet(TenantScopedViewSet):
    permission_classes = [HasScope(Scope.MANAGE), HasRole(*USER_ROLES)]
    serializer_class = ProviderKeySerializer
    lookup_value_converter = "int"

    def tenant_queryset(self) -> QuerySet[ProviderKey]:
        return selectors.provider_keys(tenant=self.tenant, end_user=self.listed_end_user)

    @cached_property
    def listed_end_user(self) -> EndUser | None:
        """Whose own keys a list shows beside the tenant's (None: the tenant's only)."""
        key = self.request.api_key
        if key is not None:
            if key.end_user is not None:
                return key.end_user
            external_id = self.request.query_params.get("end_user", "").strip()
            if not external_id:
                return None
            return end_users(tenant=self.tenant).filter(external_id=external_id).first()
        # No write on a read: a member without a profile yet has no own keys.
        return end_users(tenant=self.tenant).filter(user=self.request.user).first()

    def get_object(self) -> ProviderKey:
        """A key of the tenant the caller may see; another user's own key is a 404 too."""
        try:
            key = selectors.get_provider_key(tenant=self.tenant, key_id=self.kwargs["pk"])
        except ProviderKey.DoesNotExist:
            raise NotFound("No such key.") from None
        if key.scope == KeyScope.USER and not self._is_callers_own(key):
            raise NotFound("No such key.")
        self.check_object_permissions(self.request, key)
        return key

    def _is_callers_own(self, key: ProviderKey) -> bool:
        api_key = self.request.api_key
        if api_key is not None:
            return api_key.end_user_id is None or api_key.end_user_id == key.end_user_id
        return key.end_user is not None and key.end_user.user_id == self.request.user.pk

    def _changeable(self, key: ProviderKey) -> ProviderKey:
        if key.scope == KeyScope.TENANT and not self.manages_tenant:
            raise PermissionDenied("Only owners and admins manage the tenant's keys.")
        return key

    def _owner_of_new_key(self, external_id: str | None) -> EndUser | None:
        """Who a new key of scope `user` is for, checked before the live check. None: found or
        created when the key is saved (the signed-in user's profile, or the end user an
        unbound API key names)."""
        api_key = self.request.api_key
        if api_key is not None and api_key.end_user_id is None:
            if not external_id:
                raise ValidationError({"end_user": "Name the end user whose key this is."})
            return None
        if external_id:
            raise ValidationError(
                {
                    "end_user": "Only an API key not bound to an end user names one: yours is "
                    "the caller's own."
                }
            )
        return api_key.end_user if api_key is not None else None

    def _check(
        self, provider: Provider, secret: str, key: ProviderKey | None = None
    ) -> ValidationResult:
        result = live_check(provider, secret)
        if not result.ok:
            services.record_refused_key_check(
                tenant=self.tenant,
                provider=provider,
                error=result.error,
                status=result.status,
                actor=self.actor,
                key=key,
            )
            logger.info(
                "provider_key.api_check_failed",
                extra={
                    "tenant_id": self.tenant.pk,
                    "provider": provider.slug,
                    "status": result.status,
                },
            )
        return result

    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(ProviderKeySerializer(page, many=True).data)

    def retrieve(self, request, pk: int):
        return Response(ProviderKeySerializer(self.get_object()).data)

    def create(self, request):
        form = ProviderKeyCreateSerializer(data=request.data, context={"tenant": self.tenant})
        form.is_valid(raise_exception=True)
        data = form.validated_data
        end_user = None
        if data["scope"] == KeyScope.TENANT:
            if data.get("end_user"):
                raise ValidationError({"end_user": "A key of scope `tenant` has no end user."})
            if not self.manages_tenant:
                raise PermissionDenied("Only owners and admins add the tenant's keys.")
        else:
            end_user = self._owner_of_new_key(data.get("end_user"))
        result = self._check(data["provider"], data["secret"])
        if not result.ok:
            raise ValidationError(f"{result.error} Nothing was saved.")
        with transaction.atomic():
            if data["scope"] == KeyScope.USER and end_user is None:
                end_user = (
                    get_or_create_end_user(tenant=self.tenant, external_id=data["end_user"])
                    if request.api_key is not None
                    else end_user_for_login(tenant=self.tenant, user=request.user)
                )
            key = services.add_checked_provider_key(
                provider=data["provider"],
                secret=data["secret"],
                tenant=self.tenant,
                actor=self.actor,
                end_user=end_user,
                label=data["label"],
            )
        body = ProviderKeyCheckedSerializer(key, context={"validation_note": result.error})
        return Response(body.data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, pk: int):
        key = self._changeable(self.get_object())
        form = ProviderKeyUpdateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        with transaction.atomic():
            if "label" in data:
                services.rename_provider_key(key=key, label=data["label"], actor=self.actor)
            if "is_enabled" in data:
                services.set_provider_key_enabled(
                    key=key, enabled=data["is_enabled"], actor=self.actor
                )
        return Response(ProviderKeySerializer(key).data)

    def destroy(self, request, pk: int):
        key = self._changeable(self.get_object())
        services.delete_provider_key(key=key, actor=self.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @action(detail=True, methods=["post"])
    def replace(self, request, pk: int):
        key = self._changeable(self.get_object())
        form = ProviderKeyReplaceSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        secret = form.validated_data["secret"]
        result = self._check(key.provider, secret, key=key)
        if not result.ok:
            raise ValidationError(f"{result.error} The stored key is unchanged.")
        services.replace_checked_provider_key_secret(key=key, secret=secret, actor=self.actor)
        body = ProviderKeyCheckedSerializer(key, context={"validation_note": result.error})
        return Response(body.data)


# --- staff: providers -----------------------------------------------------------------------

STAFF_NOT_FOUND = {404: OpenApiResponse(ErrorSerializer, description="No such provider.")}


@extend_schema_view(
    list=extend_schema(
        operation_id="staff_providers_list",
        summary="Providers",
        description="Platform providers and tenants' own endpoints, with their health.",
        parameters=[ProviderQuerySerializer],
        responses={200: ProviderSerializer(many=True), **STAFF_BAD, **STAFF_ERRORS},
    ),
    retrieve=extend_schema(
        operation_id="staff_providers_retrieve",
        summary="A provider",
        responses={200: ProviderSerializer, **STAFF_NOT_FOUND, **STAFF_ERRORS},
    ),
    create=extend_schema(
        operation_id="staff_providers_create",
        summary="Add a platform provider",
        request=ProviderCreateSerializer,
        responses={201: ProviderSerializer, **STAFF_BAD, **STAFF_ERRORS},
    ),
    partial_update=extend_schema(
        operation_id="staff_providers_update",
        summary="Rename, move, configure, enable or disable a provider",
        description="Audited; the gateway applies it to the next request.",
        request=ProviderUpdateSerializer,
        responses={200: ProviderSerializer, **STAFF_BAD, **STAFF_NOT_FOUND, **STAFF_ERRORS},
    ),
)
@extend_schema(tags=["staff"])
class StaffProviderViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, StaffViewSet):
    serializer_class = ProviderSerializer
    lookup_value_converter = "int"

    def get_queryset(self) -> QuerySet[Provider]:
        providers = Provider.objects.select_related("tenant").order_by("name", "pk")
        if self.action != "list":
            return providers
        query = ProviderQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        filters = query.validated_data
        if filters.get("kind"):
            providers = providers.filter(kind=filters["kind"])
        if filters.get("enabled") is not None:
            providers = providers.filter(is_enabled=filters["enabled"])
        if filters.get("platform") is not None:
            providers = providers.filter(tenant__isnull=filters["platform"])
        return providers

    def create(self, request):
        form = ProviderCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        provider = services.create_provider(actor=request.user, **form.validated_data)
        return Response(ProviderSerializer(provider).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, pk: int):
        provider = self.get_object()
        form = ProviderUpdateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        services.update_provider(provider=provider, actor=request.user, **form.validated_data)
        return Response(ProviderSerializer(provider).data)
