"""GET /v1/models: what this key may use, plus the aliases."""

from __future__ import annotations

import orjson

from routing.gateway.auth import authenticate
from routing.gateway.http import send_json
from routing.gateway.state import GatewayState
from routing.router import ALIAS_LEVELS, AUTO
from tenants.choices import Scope

CREATED = 1_700_000_000  # OpenAI's schema wants a timestamp; catalog rows have no meaningful one


async def list_models(state: GatewayState, scope: dict, receive, send) -> None:
    snapshot = state.snapshot
    key, tenant = authenticate(scope, snapshot, Scope.MODELS)
    end_user_id = key.end_user_id
    keyed = snapshot.keys_for(tenant, end_user_id)
    names = sorted({o.name for o in snapshot.models.values() if o.provider_id in keyed})
    data = [
        {"id": alias, "object": "model", "created": CREATED, "owned_by": "switchyard"}
        for alias in (AUTO, *ALIAS_LEVELS)
    ]
    data.extend(
        {"id": name, "object": "model", "created": CREATED, "owned_by": "switchyard"}
        for name in names
    )
    await send_json(send, 200, orjson.dumps({"object": "list", "data": data}))
