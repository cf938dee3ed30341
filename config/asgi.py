"""ASGI entry: /v1/* goes to the gateway's lean ASGI app, everything else to Django.

Django's ASGI handler costs about 1 ms and a thread hop per request (see perf-notes.md), so
the completion routes never enter it.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from django.core.asgi import get_asgi_application

django_app = get_asgi_application()

from routing.gateway.app import GatewayApp  # noqa: E402

gateway_app = GatewayApp()


async def application(scope, receive, send):
    if scope["type"] == "http" and scope["path"].startswith("/v1/"):
        await gateway_app(scope, receive, send)
    elif scope["type"] == "lifespan":
        await gateway_app.lifespan(scope, receive, send)
    else:
        await django_app(scope, receive, send)
