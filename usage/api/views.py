"""Management API for usage: the report, the CSV export, credits and limits (read-only).

Every view reads the caller's tenant (an API key's, or the session's) through usage
selectors; a member or an end-user-bound key sees only that end user's usage.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable, Iterator
from itertools import islice
from typing import Any

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.db import transaction
from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from tenants.api.permissions import (
    ALL_ROLES,
    MANAGER_ROLES,
    HasAnyScope,
    HasRole,
    HasScope,
    SeesWholeTenant,
)
from tenants.api.serializers import ErrorSerializer
from tenants.api.views import TenantScopedAPIView, TenantScopedViewSet
from tenants.choices import Scope
from tenants.services import get_or_create_end_user
from usage import selectors
from usage.api.serializers import (
    LIMIT_SERIALIZERS,
    CreditsSerializer,
    CreditStatusSerializer,
    RateLimitStatusSerializer,
    SpendingCapSerializer,
    SpendingCapStatusSerializer,
    SpendingCapUpdateSerializer,
    SpendingCapWriteSerializer,
    UsageQuerySerializer,
    UsageReportQuerySerializer,
    UsageReportSerializer,
)
from usage.choices import CapScope, Outcome, PowerLevelCode
from usage.services import set_spending_cap

# Rows fetched per round trip from the server-side cursor, and written per streamed chunk:
# memory stays at one batch (~0.5 MB of CSV) however long the export.
EXPORT_BATCH_ROWS = 2000
# Spreadsheets run a cell starting with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

ERROR = ErrorSerializer
ERRORS = {
    401: OpenApiResponse(ERROR, description="No, unknown or revoked API key."),
    403: OpenApiResponse(
        ERROR, description="Missing `usage:read` scope, role not allowed, or tenant suspended."
    ),
}
BAD_QUERY = {400: OpenApiResponse(ERROR, description="A query parameter is invalid.")}
USAGE_READ = HasScope(Scope.USAGE_READ)


class InvalidQuery(APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "Invalid query parameters."
    default_code = "invalid_query"


def _parse_query(serializer_class: type[UsageQuerySerializer], view: TenantScopedAPIView):
    """Validated query parameters, or 400 `{"detail": "<field>: <problem>"}`."""
    default_period = selectors.default_report_period(tenant=view.tenant, now=timezone.now())
    query = serializer_class(
        data=view.request.query_params, context={"default_period": default_period}
    )
    if not query.is_valid():
        field, problems = next(iter(query.errors.items()))
        message = str(problems[0])
        raise InvalidQuery(message if field == "non_field_errors" else f"{field}: {message}")
    return query


def _usage_filters(serializer_class, view: TenantScopedAPIView):
    query = _parse_query(serializer_class, view)
    end_user = view.acting_end_user
    return query, query.filters(only_end_user_id=end_user.pk if end_user else None)


class UsageView(TenantScopedAPIView):
    permission_classes = [USAGE_READ, HasRole(*ALL_ROLES)]

    @extend_schema(
        operation_id="usage_report",
        tags=["usage"],
        summary="Usage, grouped",
        description=(
            "Requests, errors, tokens, cost and latency of the tenant's usage in a period "
            "(default: the current billing month), grouped by day, provider, model, end user "
            "or API key. Each usage record is one upstream attempt: `requests` counts "
            "successful attempts (a request succeeds at most once, so these are the requests "
            "served) and `errors` failed ones, so the groups always add up to `totals`. "
            "A member, or a key bound to an end user, sees only that end user's usage."
        ),
        parameters=[UsageReportQuerySerializer],
        responses={200: UsageReportSerializer, **BAD_QUERY, **ERRORS},
    )
    def get(self, request):
        query, filters = _usage_filters(UsageReportQuerySerializer, self)
        report = selectors.usage_report(
            tenant=self.tenant, filters=filters, group_by=query.validated_data["group_by"]
        )
        return Response(UsageReportSerializer(report).data)


class UsageExportView(TenantScopedAPIView):
    permission_classes = [USAGE_READ, HasRole(*ALL_ROLES)]
    # JSON renders the errors; the CSV is a streaming response that no renderer touches.
    renderer_classes = [JSONRenderer]

    def perform_content_negotiation(self, request, force=False):
        # `Accept: text/csv` must not turn into 406: errors are JSON whatever was asked for.
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        operation_id="usage_export",
        tags=["usage"],
        summary="Usage records as CSV",
        description=(
            "Every usage record (one row per upstream attempt) matching the filters, oldest "
            "first, streamed as CSV with a header row. Cells that a spreadsheet would run as "
            "a formula are prefixed with an apostrophe."
        ),
        parameters=[UsageQuerySerializer],
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="CSV file."),
            **BAD_QUERY,
            **ERRORS,
        },
    )
    def get(self, request):
        _, filters = _usage_filters(UsageQuerySerializer, self)
        rows = selectors.usage_export(tenant=self.tenant, filters=filters).iterator(
            chunk_size=EXPORT_BATCH_ROWS
        )
        content: Iterator[str] | AsyncIterator[str] = csv_chunks(rows)
        if isinstance(request._request, ASGIRequest):
            content = pull_in_thread(content)
        response = StreamingHttpResponse(content, content_type="text/csv; charset=utf-8")
        filename = f"usage-{self.tenant.slug}-{filters.start}-{filters.end}.csv"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


def csv_chunks(rows: Iterable[Any], *, batch: int = EXPORT_BATCH_ROWS) -> Iterator[str]:
    """The header row, then the rows as CSV, `batch` rows per chunk."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(selectors.EXPORT_COLUMNS)
    for count, row in enumerate(rows, 1):
        writer.writerow(export_cells(row))
        if count % batch == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


async def pull_in_thread(chunks: Iterator[str]) -> AsyncIterator[str]:
    """Serve a sync iterator under ASGI without loading it whole.

    Django consumes a sync iterator into a list before streaming it over ASGI; pulling one
    chunk at a time in the request's thread (where its database cursor lives) keeps memory
    flat instead.
    """
    next_chunks = sync_to_async(lambda: list(islice(chunks, 1)), thread_sensitive=True)
    while chunk := await next_chunks():
        yield chunk[0]


POWER_LEVELS = dict(PowerLevelCode.choices)
OUTCOMES = dict(Outcome.choices)


def safe_cell(value: str | None) -> str:
    """A text cell a spreadsheet will show rather than evaluate."""
    if not value:
        return ""
    return f"'{value}" if value.startswith(FORMULA_STARTS) else value


def export_cells(row: Any) -> list[Any]:
    """One record (a `selectors.usage_export` row) as the cells of EXPORT_COLUMNS."""
    return [
        row.created_at.isoformat(),
        str(row.request_id),
        row.attempt,
        safe_cell(row.end_user_external_id),
        safe_cell(selectors.api_key_label(row.api_key_name, row.api_key_prefix)),
        safe_cell(row.provider_name or (f"#{row.provider_id}" if row.provider_id else "")),
        safe_cell(row.model_name or (f"#{row.model_id}" if row.model_id else "")),
        POWER_LEVELS.get(row.power_level, row.power_level),
        OUTCOMES.get(row.outcome, row.outcome),
        "" if row.http_status is None else row.http_status,
        "true" if row.is_stream else "false",
        "true" if row.is_estimated else "false",
        row.input_tokens,
        row.cached_tokens,
        row.output_tokens,
        f"{row.cost_usd:f}",
        row.latency_ms,
        "" if row.ttft_ms is None else row.ttft_ms,
        safe_cell(row.error),
    ]


class CreditsView(TenantScopedAPIView):
    # The ledger is the tenant's money: owners, admins, viewers and whole-tenant keys.
    permission_classes = [USAGE_READ, SeesWholeTenant]

    def tenant_queryset(self):
        return selectors.credit_entries(tenant_id=self.tenant.pk).order_by("-created_at", "-pk")

    @extend_schema(
        operation_id="credits",
        tags=["usage"],
        summary="Credit balance and ledger",
        description=(
            "The prepaid balance (the ledger's sum) and the ledger entries, newest first, "
            "paginated with `limit` and `offset`."
        ),
        parameters=[
            OpenApiParameter("limit", int, description="Entries per page (default 50)."),
            OpenApiParameter("offset", int, description="Entries to skip."),
        ],
        responses={200: CreditsSerializer, **ERRORS},
    )
    def get(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return Response(
            CreditsSerializer(
                {
                    "balance_usd": selectors.credit_balance(tenant_id=self.tenant.pk),
                    "count": self.paginator.count,
                    "next": self.paginator.get_next_link(),
                    "previous": self.paginator.get_previous_link(),
                    "entries": page,
                }
            ).data
        )


class LimitsView(TenantScopedAPIView):
    permission_classes = [USAGE_READ, HasRole(*ALL_ROLES)]

    @extend_schema(
        operation_id="limits",
        tags=["usage"],
        summary="Rate limits, spending caps and credits, as they stand",
        description=(
            "The plan's rate limits (and the calling key's own per-minute limit) from the "
            "live counters, the tenant's monthly spending cap and, for a member or an "
            "end-user-bound key, that end user's cap, and the credit balance on a prepaid "
            "plan. `kind` tells the entries apart. When the counters cannot be read, rate "
            "limits say `unavailable: true`."
        ),
        responses={
            200: inline_serializer(
                "Limits",
                {
                    "limits": PolymorphicProxySerializer(
                        component_name="LimitStatus",
                        serializers={
                            "rate": RateLimitStatusSerializer,
                            "spending_cap": SpendingCapStatusSerializer,
                            "credits": CreditStatusSerializer,
                        },
                        resource_type_field_name="kind",
                        many=True,
                    )
                },
            ),
            **ERRORS,
        },
    )
    def get(self, request):
        entries = selectors.limit_status(
            tenant=self.tenant,
            api_key=request.api_key,
            end_user=self.acting_end_user,
            now=timezone.now(),
        )
        return Response(
            {"limits": [LIMIT_SERIALIZERS[entry["kind"]](entry).data for entry in entries]}
        )


# --- spending caps --------------------------------------------------------------------------

CAPS_FORBIDDEN = (
    "Missing `usage:read` or `manage` scope (`manage` to change); a member or an "
    "end-user-bound key; or, to change, a viewer."
)
CAP_NOT_FOUND = {404: OpenApiResponse(ERROR, description="No such cap (or another tenant's).")}
CAP_ERRORS = {
    401: ERRORS[401],
    403: OpenApiResponse(ERROR, description=CAPS_FORBIDDEN),
}
BAD_CAP = {400: OpenApiResponse(ERROR, description="Invalid input; nothing saved.")}


@extend_schema_view(
    list=extend_schema(
        operation_id="spending_caps_list",
        summary="Spending caps",
        description="The tenant's monthly caps: the whole tenant's, each end user's (the "
        "default) and single end users'. Disabled caps are listed too.",
        responses={200: SpendingCapSerializer(many=True), **CAP_ERRORS},
    ),
    retrieve=extend_schema(
        operation_id="spending_caps_retrieve",
        summary="A spending cap",
        responses={200: SpendingCapSerializer, **CAP_NOT_FOUND, **CAP_ERRORS},
    ),
    create=extend_schema(
        operation_id="spending_caps_set",
        summary="Set a spending cap",
        description="Creates the cap of `scope` (and `end_user`), or changes it if there is "
        "one (201 when created, 200 when changed). The gateway applies it to the next request.",
        request=SpendingCapWriteSerializer,
        responses={
            201: SpendingCapSerializer,
            200: SpendingCapSerializer,
            **BAD_CAP,
            **CAP_ERRORS,
        },
    ),
    partial_update=extend_schema(
        operation_id="spending_caps_update",
        summary="Change a spending cap",
        request=SpendingCapUpdateSerializer,
        responses={200: SpendingCapSerializer, **BAD_CAP, **CAP_NOT_FOUND, **CAP_ERRORS},
    ),
    destroy=extend_schema(
        operation_id="spending_caps_disable",
        summary="Disable a spending cap",
        description="The cap stops applying; it is kept (disabled) with its history.",
        responses={204: None, **CAP_NOT_FOUND, **CAP_ERRORS},
    ),
)
@extend_schema(tags=["spending caps"])
class SpendingCapViewSet(TenantScopedViewSet):
    # The caps are the tenant's money: owners, admins, viewers and whole-tenant keys read
    # them; owners, admins and `manage` keys change them.
    permission_classes = [HasAnyScope(Scope.USAGE_READ, Scope.MANAGE), SeesWholeTenant]
    serializer_class = SpendingCapSerializer
    lookup_value_converter = "int"

    def get_permissions(self):
        permissions = super().get_permissions()
        if self.action not in ("list", "retrieve"):
            permissions += [HasScope(Scope.MANAGE)(), HasRole(*MANAGER_ROLES)()]
        return permissions

    def tenant_queryset(self):
        return selectors.spending_caps(tenant_id=self.tenant.pk).order_by(
            "scope", "end_user__external_id", "pk"
        )

    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(SpendingCapSerializer(page, many=True).data)

    def retrieve(self, request, pk: int):
        return Response(SpendingCapSerializer(self.get_object()).data)

    def create(self, request):
        form = SpendingCapWriteSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        with transaction.atomic():
            end_user = (
                get_or_create_end_user(tenant=self.tenant, external_id=data["end_user"])
                if data["scope"] == CapScope.USER
                else None
            )
            existed = self.get_queryset().filter(scope=data["scope"], end_user=end_user).exists()
            cap = set_spending_cap(
                tenant=self.tenant,
                scope=data["scope"],
                end_user=end_user,
                amount_usd=data["amount_usd"],
                mode=data["mode"],
                alert_thresholds=data.get("alert_thresholds"),
                is_enabled=data["is_enabled"],
                actor=self.actor,
            )
        return Response(
            SpendingCapSerializer(cap).data,
            status=status.HTTP_200_OK if existed else status.HTTP_201_CREATED,
        )

    def partial_update(self, request, pk: int):
        cap = self.get_object()
        form = SpendingCapUpdateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        cap = self._set(cap, **form.validated_data)
        return Response(SpendingCapSerializer(cap).data)

    def destroy(self, request, pk: int):
        self._set(self.get_object(), is_enabled=False)
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _set(self, cap, **changes):
        """set_spending_cap with `cap`'s current values, `changes` applied."""
        return set_spending_cap(
            tenant=self.tenant,
            scope=cap.scope,
            end_user=cap.end_user,
            amount_usd=changes.get("amount_usd", cap.amount_usd),
            mode=changes.get("mode", cap.mode),
            alert_thresholds=changes.get("alert_thresholds"),
            is_enabled=changes.get("is_enabled", cap.is_enabled),
            actor=self.actor,
        )
