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


class SwitchyardApp:
    """/v1/* to the gateway, the lifespan to the gateway's state, the rest to Django."""

    def __init__(self) -> None:
        self.gateway = GatewayApp()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            await self.gateway(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.gateway.lifespan(scope, receive, send)
        else:
            await django_app(scope, receive, send)


application = SwitchyardApp()
