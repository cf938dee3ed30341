"""Errors on /v1/*: always OpenAI's envelope, with SPEC §3's status codes and codes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import orjson

TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    502: "api_error",
    503: "api_error",
    504: "timeout_error",
}


class GatewayError(Exception):
    """Ends a request with `status` and OpenAI's error envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: Sequence[tuple[bytes, bytes]] = (),
        extra: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = list(headers)
        self.extra = dict(extra or {})

    def body(self) -> bytes:
        return envelope(self.status, self.message, code=self.code, param=self.param, **self.extra)


def envelope(
    status: int, message: str, *, code: str | None = None, param: str | None = None, **extra
) -> bytes:
    error = {
        "message": message,
        "type": TYPES.get(status, "api_error"),
        "param": param,
        "code": code,
    }
    error.update(extra)
    return orjson.dumps({"error": error})


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> GatewayError:
    return GatewayError(400, message, param=param, code=code)
