"""Request middleware of tenants: where each request came from, for the audit log."""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from tenants import audit


class AuditOriginMiddleware:
    """Every audit entry a page, management-API or admin request records carries the client
    address and user agent. Sync and async capable, so it adds no thread hop under ASGI."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        with audit.acting_from(audit.origin_of(request)):
            return self.get_response(request)

    async def __acall__(self, request):
        # A sync view runs in a thread with a copy of this context, so it sees the origin.
        with audit.acting_from(audit.origin_of(request)):
            return await self.get_response(request)
