"""A provider that misbehaves on purpose, where the simulator is too polite: it quotes the
key it was sent, puts NUL bytes in its errors, and so on. A plain threaded HTTP server on
127.0.0.1; `respond(path, key)` decides each answer."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# (status, JSON body) for a request to `path` carrying `key`.
Respond = Callable[[str, str], tuple[int, Any]]


def error_body(message: str, *, param: Any = None, code: Any = None) -> dict[str, Any]:
    """OpenAI's error shape around `message`."""
    return {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": param,
            "code": code,
        }
    }


def echo_key(path: str, key: str) -> tuple[int, Any]:
    """Every answer an error quoting the key, with the status the base URL names
    (`…/s401/v1`, `…/s500/v1`), the way some providers do (and worse: whole)."""
    message = f"Incorrect API key provided: {key}. You passed {key!r}."
    return int(path.split("/")[1][1:]), error_body(
        message, param=key, code=f"invalid_api_key:{key}"
    )


class _Handler(BaseHTTPRequestHandler):
    respond: Respond

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        key = (self.headers.get("authorization") or "")[7:] or self.headers.get("x-api-key", "")
        status, payload = type(self).respond(self.path, key)
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:  # tests capture Switchyard's logs, not this
        pass


@contextmanager
def hostile_upstream(respond: Respond) -> Iterator[str]:
    """Serve `respond` on 127.0.0.1; yields the base URL (no trailing slash)."""
    handler = type("Handler", (_Handler,), {"respond": staticmethod(respond)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
