"""Bases for tenant-scoped management-API views: the tenant comes from the caller, never a URL."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from rest_framework import exceptions
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler
from rest_framework.viewsets import GenericViewSet

from tenants.api.pagination import Pagination
from tenants.api.parsers import PARSER_CLASSES
from tenants.api.permissions import HasTenant, IsStaffSession
from tenants.api.tenancy import resolve_session_tenant
from tenants.choices import Role
from tenants.models import EndUser, Tenant, TenantAPIKey
from tenants.services import InvalidScope, MembershipRuleError, end_user_for_login

# Domain errors a service raises for input it refuses: a 400 with the service's message.
REFUSED_INPUT = (DjangoValidationError, InvalidScope, MembershipRuleError)
NON_FIELD_KEYS = ("non_field_errors", "__all__")


def error_message(errors: Any, field: str = "") -> str:
    """DRF's validation errors (by field, nested, listed) as one line: "field: problem."."""
    if isinstance(errors, dict):
        return " ".join(
            error_message(problems, _field_path(field, key)) for key, problems in errors.items()
        )
    if isinstance(errors, list):
        return " ".join(error_message(problem, field) for problem in errors)
    return f"{field}: {errors}" if field else str(errors)


def _field_path(parent: str, key: Any) -> str:
    if key in NON_FIELD_KEYS:
        return parent
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else str(key)


def api_exception_handler(exc: Exception, context: dict) -> Any:
    """DRF's handler, with every error as `{"detail": "..."}` (STYLE §4) and services'
    refusals (Django's ValidationError, the tenants rule errors) as 400s."""
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(as_serializer_error(exc))
    elif isinstance(exc, REFUSED_INPUT):
        exc = exceptions.ValidationError(str(exc))
    response = exception_handler(exc, context)
    if response is not None and isinstance(exc, exceptions.ValidationError):
        response.data = {"detail": error_message(response.data)}
    return response


class APIKeyActor:
    """The `actor` services get for an API-key caller. Not a login user (so no service puts
    it in a user foreign key, and owner-only rules refuse it); audited as `api-key:<prefix>`."""

    is_authenticated = False
    is_superuser = False
    is_staff = False
    pk = None

    def __init__(self, api_key: TenantAPIKey) -> None:
        self.api_key = api_key

    def __str__(self) -> str:
        return self.get_username()

    def get_username(self) -> str:
        return f"api-key:{self.api_key.prefix}"


class TenantScopedMixin:
    """Binds `request.tenant`, `request.api_key` and `request.membership` after authentication.

    An API key brings its tenant; a session user acts in the session's tenant (see
    `resolve_session_tenant`). `IsAuthenticated` and `HasTenant` always run first, ahead of
    a subclass's `permission_classes`, so no subclass can forget them.
    """

    base_permission_classes: tuple[type[BasePermission], ...] = (IsAuthenticated, HasTenant)
    pagination_class = Pagination
    parser_classes = PARSER_CLASSES
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

    def get_exception_handler(self):
        return api_exception_handler

    @property
    def tenant(self) -> Tenant:
        return self.request.tenant

    @property
    def actor(self) -> Any:
        """Who services record as having made a change: the login user, or the API key."""
        key = self.request.api_key
        return APIKeyActor(key) if key is not None else self.request.user

    @property
    def manages_tenant(self) -> bool:
        """May change the whole tenant: an owner or admin, or a key not bound to an end user
        (scopes are checked by the view's permission classes)."""
        key = self.request.api_key
        if key is not None:
            return key.end_user_id is None
        membership = self.request.membership
        return membership is not None and membership.can_manage

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


class StaffViewSet(GenericViewSet):
    """Platform configuration for staff signed in to the site; API keys never reach it."""

    permission_classes = [IsAuthenticated, IsStaffSession]
    pagination_class = Pagination
    parser_classes = PARSER_CLASSES

    def get_exception_handler(self):
        return api_exception_handler
