"""X-Request-ID for pages, the admin and the management API (the gateway sets its own).

A caller's id is kept when it is a sane token, so a proxy's or client's id ties their logs to
ours; anything else (too long, odd characters, a header injection attempt) is replaced.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

from config.logging import REQUEST_ID

SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,63}")


class RequestIDMiddleware:
    """Sets the request id for the request's log lines and echoes it in the response.

    Sync and async capable, so it adds no thread hop under ASGI."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if self.is_async:
            return self.__acall__(request)
        token = self._begin(request)
        try:
            response = self.get_response(request)
        finally:
            # A sync server reuses its threads: the next request must not inherit this id.
            REQUEST_ID.reset(token)
        response["X-Request-ID"] = request.request_id
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        # A sync view runs in a thread with a copy of this context, so its lines carry the id.
        token = self._begin(request)
        try:
            response = await self.get_response(request)
        finally:
            REQUEST_ID.reset(token)
        response["X-Request-ID"] = request.request_id
        return response

    @staticmethod
    def _begin(request: HttpRequest):
        incoming = request.headers.get("X-Request-ID", "")
        request.request_id = incoming if SANE_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        return REQUEST_ID.set(request.request_id)
