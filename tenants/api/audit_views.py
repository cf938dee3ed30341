"""Management API: the tenant's audit log, for its owners and admins (and `manage` keys).

Read-only and tenant-scoped through `tenants.selectors.audit_entries`: another tenant's
entries and the platform's own never appear. `?format=csv` streams every matching entry.
"""

from __future__ import annotations

from django.core.handlers.asgi import ASGIRequest
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework.renderers import JSONRenderer

from tenants import audit_export
from tenants.api.audit_serializers import AuditEntrySerializer, AuditQuerySerializer
from tenants.api.permissions import MANAGER_ROLES, HasRole, HasScope, SeesWholeTenant
from tenants.api.serializers import error_responses
from tenants.api.views import TenantScopedViewSet
from tenants.choices import Scope
from tenants.models import AuditLog
from tenants.selectors import audit_entries
from tenants.services import record_audit_export

FORBIDDEN = "Missing `manage` scope, an end-user-bound key, or neither owner nor admin."


@extend_schema_view(
    list=extend_schema(
        operation_id="audit_log_list",
        summary="Audit log",
        description=(
            "Who changed what in this tenant, when and from where, newest first: provider "
            "keys, settings, caps, API keys, members, and staff's changes to the tenant "
            "(unnamed). `format=csv` returns every matching entry as one CSV file instead of "
            "a page; cells a spreadsheet would run as a formula are prefixed with `'`."
        ),
        parameters=[AuditQuerySerializer],
        responses={
            (200, "application/json"): AuditEntrySerializer(many=True),
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="CSV file."),
            **error_responses(forbidden=FORBIDDEN, bad_request="A filter is invalid."),
        },
    ),
)
@extend_schema(tags=["audit log"])
class AuditLogViewSet(TenantScopedViewSet):
    permission_classes = [HasScope(Scope.MANAGE), HasRole(*MANAGER_ROLES), SeesWholeTenant]
    serializer_class = AuditEntrySerializer
    # JSON renders pages and errors; the CSV is a streaming response no renderer touches.
    renderer_classes = [JSONRenderer]

    def perform_content_negotiation(self, request, force=False):
        # `?format=csv` is this view's own parameter, not a renderer to look for (a 404).
        return super().perform_content_negotiation(request, force=True)

    def tenant_queryset(self) -> QuerySet[AuditLog]:
        return audit_entries(tenant=self.tenant)

    def list(self, request):
        query = AuditQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        entries = audit_entries(tenant=self.tenant, filters=query.filters())
        if query.validated_data["format"] == "csv":
            return self._csv(entries, query)
        page = self.paginate_queryset(entries)
        return self.get_paginated_response(AuditEntrySerializer(page, many=True).data)

    def _csv(self, entries: QuerySet[AuditLog], query: AuditQuerySerializer):
        filters = query.filters().as_dict()
        own = record_audit_export(actor=self.actor, tenant=self.tenant, fmt="csv", filters=filters)
        rows = entries.filter(pk__lt=own.pk).iterator(chunk_size=audit_export.EXPORT_BATCH_ROWS)
        content = audit_export.streamed(
            rows, for_tenant=True, is_async=isinstance(self.request._request, ASGIRequest)
        )
        response = StreamingHttpResponse(content, content_type="text/csv; charset=utf-8")
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        filename = f"audit-log-{self.tenant.slug}-{stamp}.csv"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        response["Cache-Control"] = "no-store"
        return response
