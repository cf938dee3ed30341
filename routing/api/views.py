"""Management API for LLM settings (tenant default, the caller's override) and, for staff,
the model catalog and routing policies. Every write goes through routing.services."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import Q, QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.response import Response

from providers.selectors import providers_for
from routing import selectors, services
from routing.api.serializers import (
    CatalogModelQuerySerializer,
    CatalogModelsEnabledResultSerializer,
    CatalogModelsEnabledSerializer,
    CatalogModelSerializer,
    CatalogModelUpdateSerializer,
    MySettingsResponseSerializer,
    MySettingsSerializer,
    RoutingPolicySerializer,
    RoutingPolicyUpdateSerializer,
    TenantSettingsResponseSerializer,
    TenantSettingsSerializer,
)
from routing.models import CatalogModel, LLMSettings, RoutingPolicy
from tenants.api.permissions import USER_ROLES, HasRole, HasScope
from tenants.api.serializers import STAFF_BAD, STAFF_ERRORS, ErrorSerializer, error_responses
from tenants.api.views import StaffViewSet, TenantScopedAPIView
from tenants.choices import Scope
from tenants.models import EndUser, Tenant
from tenants.selectors import end_users
from tenants.services import end_user_for_login

if TYPE_CHECKING:
    from routing.gateway.snapshot import Settings

SETTINGS_TAGS = ["settings"]
SETTINGS_FORBIDDEN = (
    "Missing `manage` scope; a viewer; or, to change the tenant default, a member or an "
    "end-user-bound key."
)
BAD_SETTINGS = "A value is invalid (unknown model or provider, out of range); nothing saved."


def _provider_slugs(tenant: Tenant, ids: Iterable[int]) -> list[str]:
    ids = list(ids)
    if not ids:
        return []
    return sorted(providers_for(tenant=tenant).filter(pk__in=ids).values_list("slug", flat=True))


def effective_data(tenant: Tenant, effective: Settings) -> dict[str, Any]:
    return {
        "power_level": effective.power_level,
        "preferred_providers": _provider_slugs(tenant, effective.preferred_providers),
        "preferred_models": sorted(effective.preferred_models),
        "auto_failover": effective.auto_failover,
        "default_temperature": effective.default_temperature,
        "default_max_tokens": effective.default_max_tokens,
        "system_prompt": effective.system_prompt,
    }


def stored_data(row: LLMSettings | None, *, with_prompt: bool) -> dict[str, Any]:
    """One level's own values (`row` from selectors.get_settings_row, or None: all inherit)."""
    data: dict[str, Any] = {
        "power_level": row.power_level if row else "",
        "preferred_providers": sorted(p.slug for p in row.preferred_providers.all()) if row else [],
        "preferred_models": list(row.preferred_models or []) if row else [],
        "auto_failover": row.auto_failover if row else None,
        "default_temperature": row.default_temperature if row else None,
        "default_max_tokens": row.default_max_tokens if row else None,
    }
    if with_prompt:
        data["system_prompt"] = row.system_prompt if row else ""
    return data


class _SettingsView(TenantScopedAPIView):
    permission_classes = [HasScope(Scope.MANAGE), HasRole(*USER_ROLES)]

    @cached_property
    def caller_end_user(self) -> EndUser | None:
        """Whose override the caller's requests get; no write (a profile is made on save)."""
        key = self.request.api_key
        if key is not None:
            return key.end_user
        return end_users(tenant=self.tenant).filter(user=self.request.user).first()

    def _save(self, serializer_class, *, partial: bool, **target: Any) -> None:
        form = serializer_class(
            data=self.request.data, partial=partial, context={"tenant": self.tenant}
        )
        form.is_valid(raise_exception=True)
        services.set_llm_settings(
            tenant=self.tenant, actor=self.actor, **target, **form.settings_fields()
        )


def _settings_schema(*, method: str, request=None, response, summary: str, description: str):
    return extend_schema(
        operation_id=f"settings_{method}",
        tags=SETTINGS_TAGS,
        summary=summary,
        description=description,
        request=request,
        responses={
            200: response,
            **error_responses(
                forbidden=SETTINGS_FORBIDDEN, bad_request=BAD_SETTINGS if request else None
            ),
        },
    )


class SettingsView(_SettingsView):
    """The tenant's LLM settings; owners, admins and unbound `manage` keys change them."""

    def _body(self) -> dict[str, Any]:
        tenant = self.tenant
        return {
            "tenant": stored_data(selectors.get_settings_row(tenant=tenant), with_prompt=True),
            "tenant_effective": effective_data(tenant, selectors.effective_settings(tenant=tenant)),
            "effective": effective_data(
                tenant, selectors.effective_settings(tenant=tenant, end_user=self.caller_end_user)
            ),
        }

    def _change(self, *, partial: bool) -> Response:
        if not self.manages_tenant:
            raise PermissionDenied("Only owners and admins change the tenant's settings.")
        self._save(TenantSettingsSerializer, partial=partial)
        return Response(TenantSettingsResponseSerializer(self._body()).data)

    @_settings_schema(
        method="get",
        response=TenantSettingsResponseSerializer,
        summary="The tenant's LLM settings",
        description=(
            "The tenant default as stored (empty values inherit the platform's), the same "
            "after inheritance, and what the caller's own requests get (their override "
            "applied)."
        ),
    )
    def get(self, request):
        return Response(TenantSettingsResponseSerializer(self._body()).data)

    @_settings_schema(
        method="put",
        request=TenantSettingsSerializer,
        response=TenantSettingsResponseSerializer,
        summary="Set the tenant's LLM settings",
        description=(
            "Sets every field; a field left out becomes empty (inherits the platform's). The "
            "gateway applies the change to the next request."
        ),
    )
    def put(self, request):
        return self._change(partial=False)

    @_settings_schema(
        method="patch",
        request=TenantSettingsSerializer,
        response=TenantSettingsResponseSerializer,
        summary="Change some of the tenant's LLM settings",
        description="Changes the fields sent; the others stay.",
    )
    def patch(self, request):
        return self._change(partial=True)


class MySettingsView(_SettingsView):
    """The caller's own override: a signed-in user's, or an end-user-bound key's end user's."""

    def check_permissions(self, request) -> None:
        super().check_permissions(request)
        key = request.api_key
        if key is not None and key.end_user_id is None:
            raise PermissionDenied(
                "This API key acts for no end user, so it has no settings of its own: "
                "bind a key to the end user, or change the tenant's at /api/v1/settings."
            )

    def _body(self) -> dict[str, Any]:
        tenant, end_user = self.tenant, self.caller_end_user
        row = selectors.get_settings_row(tenant=tenant, end_user=end_user) if end_user else None
        return {
            "settings": stored_data(row, with_prompt=False),
            "effective": effective_data(
                tenant, selectors.effective_settings(tenant=tenant, end_user=end_user)
            ),
        }

    def _change(self, *, partial: bool) -> Response:
        end_user = self.caller_end_user
        with transaction.atomic():
            if end_user is None:
                end_user = end_user_for_login(tenant=self.tenant, user=self.request.user)
            self._save(MySettingsSerializer, partial=partial, end_user=end_user)
        self.caller_end_user = end_user
        return Response(MySettingsResponseSerializer(self._body()).data)

    @_settings_schema(
        method="me_get",
        response=MySettingsResponseSerializer,
        summary="My LLM settings",
        description="The caller's own override as stored (empty values inherit the tenant "
        "default) and what the caller's requests get.",
    )
    def get(self, request):
        return Response(MySettingsResponseSerializer(self._body()).data)

    @_settings_schema(
        method="me_put",
        request=MySettingsSerializer,
        response=MySettingsResponseSerializer,
        summary="Set my LLM settings",
        description="Sets every field of the caller's override; a field left out inherits.",
    )
    def put(self, request):
        return self._change(partial=False)

    @_settings_schema(
        method="me_patch",
        request=MySettingsSerializer,
        response=MySettingsResponseSerializer,
        summary="Change some of my LLM settings",
        description="Changes the fields sent; the others stay.",
    )
    def patch(self, request):
        return self._change(partial=True)


# --- staff ------------------------------------------------------------------------------------

STAFF_TAGS = ["staff"]
STAFF_NOT_FOUND = {404: OpenApiResponse(ErrorSerializer, description="No such row.")}


@extend_schema_view(
    list=extend_schema(
        operation_id="staff_catalog_models_list",
        summary="Catalog models",
        parameters=[CatalogModelQuerySerializer],
        responses={200: CatalogModelSerializer(many=True), **STAFF_BAD, **STAFF_ERRORS},
    ),
    retrieve=extend_schema(
        operation_id="staff_catalog_models_retrieve",
        summary="A catalog model",
        responses={200: CatalogModelSerializer, **STAFF_NOT_FOUND, **STAFF_ERRORS},
    ),
    partial_update=extend_schema(
        operation_id="staff_catalog_models_update",
        summary="Enable, price or score a catalog model",
        description=(
            "Changes the fields sent. A price change is kept in the model's price history; "
            "setting `quality_score` marks it overridden. Audited; the gateway applies it to "
            "the next request."
        ),
        request=CatalogModelUpdateSerializer,
        responses={200: CatalogModelSerializer, **STAFF_BAD, **STAFF_NOT_FOUND, **STAFF_ERRORS},
    ),
    set_enabled=extend_schema(
        operation_id="staff_catalog_models_set_enabled",
        summary="Enable or disable many catalog models",
        request=CatalogModelsEnabledSerializer,
        responses={
            200: CatalogModelsEnabledResultSerializer,
            **STAFF_BAD,
            404: OpenApiResponse(
                ErrorSerializer, description="Some ids name no catalog model; nothing changed."
            ),
            **STAFF_ERRORS,
        },
    ),
)
@extend_schema(tags=STAFF_TAGS)
class StaffCatalogModelViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, StaffViewSet):
    serializer_class = CatalogModelSerializer
    lookup_value_converter = "int"

    def get_queryset(self) -> QuerySet[CatalogModel]:
        models = selectors.catalog_models().order_by("provider__name", "name", "pk")
        if self.action != "list":
            return models
        query = CatalogModelQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        filters = query.validated_data
        if filters.get("provider"):
            models = models.filter(provider__slug=filters["provider"])
        if filters.get("enabled") is not None:
            models = models.filter(is_enabled=filters["enabled"])
        if filters.get("deprecated") is not None:
            models = models.filter(is_deprecated=filters["deprecated"])
        if filters.get("mode"):
            models = models.filter(mode=filters["mode"])
        if filters.get("search"):
            text = filters["search"]
            models = models.filter(Q(name__icontains=text) | Q(model_id__icontains=text))
        return models

    def partial_update(self, request, pk: int):
        model = self.get_object()
        form = CatalogModelUpdateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        fields = dict(form.validated_data)
        enabled = fields.pop("is_enabled", None)
        with transaction.atomic():
            if fields:
                services.update_catalog_model(model=model, actor=request.user, **fields)
            if enabled is not None:
                services.set_catalog_models_enabled(
                    models=[model], enabled=enabled, actor=request.user
                )
        return Response(CatalogModelSerializer(model).data)

    @action(detail=False, methods=["post"], url_path="set-enabled")
    def set_enabled(self, request):
        form = CatalogModelsEnabledSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        ids = form.validated_data["ids"]
        models = list(selectors.catalog_models().filter(pk__in=ids))
        missing = sorted(set(ids) - {m.pk for m in models})
        if missing:
            raise NotFound(f"No catalog models with ids {', '.join(map(str, missing))}.")
        changed = services.set_catalog_models_enabled(
            models=models, enabled=form.validated_data["is_enabled"], actor=request.user
        )
        return Response({"changed": changed})


@extend_schema_view(
    list=extend_schema(
        operation_id="staff_routing_policies_list",
        summary="Routing policies (one per power level)",
        responses={200: RoutingPolicySerializer(many=True), **STAFF_ERRORS},
    ),
    retrieve=extend_schema(
        operation_id="staff_routing_policies_retrieve",
        summary="A power level's routing policy",
        responses={200: RoutingPolicySerializer, **STAFF_NOT_FOUND, **STAFF_ERRORS},
    ),
    partial_update=extend_schema(
        operation_id="staff_routing_policies_update",
        summary="Change a power level's price cap, weights or preferred kinds",
        description="Audited; the gateway applies it to the next request.",
        request=RoutingPolicyUpdateSerializer,
        responses={200: RoutingPolicySerializer, **STAFF_BAD, **STAFF_NOT_FOUND, **STAFF_ERRORS},
    ),
)
@extend_schema(tags=STAFF_TAGS)
class StaffRoutingPolicyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, StaffViewSet):
    serializer_class = RoutingPolicySerializer
    lookup_field = "power_level"
    lookup_value_converter = "str"
    pagination_class = None  # one row per power level

    def get_queryset(self) -> QuerySet[RoutingPolicy]:
        return selectors.routing_policies()

    def partial_update(self, request, power_level: str):
        policy = self.get_object()
        form = RoutingPolicyUpdateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        services.update_routing_policy(policy=policy, actor=request.user, **form.validated_data)
        return Response(RoutingPolicySerializer(policy).data)
