"""X-Request-ID for pages, the admin and the management API (the gateway sets its own).

A caller's id is kept when it is a sane token, so a proxy's or client's id ties their logs to
ours; anything else (too long, odd characters, a header injection attempt) is replaced.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from config.logging import REQUEST_ID

SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,63}")


class RequestIDMiddleware:
    """Sets the request id for the request's log lines and echoes it in the response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if SANE_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        token = REQUEST_ID.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            # A sync server reuses its threads: the next request must not inherit this id.
            REQUEST_ID.reset(token)
        response["X-Request-ID"] = request_id
        return response
