"""Bases for tenant-scoped management-API views: the tenant comes from the caller, never a URL."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from django.db.models import QuerySet
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.viewsets import GenericViewSet

from tenants.api.permissions import HasTenant
from tenants.api.tenancy import resolve_session_tenant
from tenants.choices import Role
from tenants.models import EndUser, Tenant, TenantAPIKey
from tenants.services import end_user_for_login


class TenantScopedMixin:
    """Binds `request.tenant`, `request.api_key` and `request.membership` after authentication.

    An API key brings its tenant; a session user acts in the session's tenant (see
    `resolve_session_tenant`). `IsAuthenticated` and `HasTenant` always run first, ahead of
    a subclass's `permission_classes`, so no subclass can forget them.
    """

    base_permission_classes: tuple[type[BasePermission], ...] = (IsAuthenticated, HasTenant)
    request: Any

    def perform_authentication(self, request) -> None:
        super().perform_authentication(request)  # type: ignore[misc]  # raises for a bad key
        key = request.auth if isinstance(request.auth, TenantAPIKey) else None
        if key is not None:
            tenant, membership = key.tenant, None
        else:
            tenant, membership = resolve_session_tenant(request)
        for target in (request, request._request):
            target.tenant = tenant
            target.api_key = key
            target.membership = membership

    def get_permissions(self) -> list[BasePermission]:
        base = [permission() for permission in self.base_permission_classes]
        return base + super().get_permissions()  # type: ignore[misc]

    @property
    def tenant(self) -> Tenant:
        return self.request.tenant

    @cached_property
    def acting_end_user(self) -> EndUser | None:
        """The one end user whose data the caller may see, or None for the whole tenant.

        A key bound to an end user acts for it; a session `member` sees their own end-user
        profile (created on first use); owners, admins and viewers see the whole tenant.
        """
        key = self.request.api_key
        if key is not None:
            return key.end_user
        membership = self.request.membership
        if membership is not None and membership.role == Role.MEMBER:
            return end_user_for_login(tenant=self.tenant, user=self.request.user)
        return None

    def tenant_queryset(self) -> QuerySet:
        """The rows of `self.tenant` this view serves; subclasses with a queryset implement it."""
        raise NotImplementedError(f"{type(self).__name__} must implement tenant_queryset().")

    def get_queryset(self) -> QuerySet:
        return self.tenant_queryset()


class TenantScopedAPIView(TenantScopedMixin, GenericAPIView):
    """One action on the caller's tenant (a report, a status)."""


class TenantScopedViewSet(TenantScopedMixin, GenericViewSet):
    """CRUD on the caller's tenant's rows: another tenant's row is a 404, never a 403."""
