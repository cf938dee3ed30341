"""GET /metrics behind SWITCHYARD_METRICS_TOKEN: open without it, bearer-only with it."""

from __future__ import annotations

import pytest

TOKEN = "scrape-9f2c41d0b7e84a1c"


@pytest.fixture
def metrics_token(settings):
    settings.SWITCHYARD_METRICS_TOKEN = TOKEN
    return TOKEN


def test_open_when_no_token_is_set(client, settings):
    settings.SWITCHYARD_METRICS_TOKEN = ""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert b"# HELP " in response.content


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", TOKEN],
)
def test_refused_without_the_right_bearer_token(client, metrics_token, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert b"# HELP " not in response.content
    assert TOKEN.encode() not in response.content


@pytest.mark.parametrize("scheme", ["Bearer", "bearer"])
def test_served_with_the_token(client, metrics_token, scheme):
    response = client.get("/metrics", headers={"Authorization": f"{scheme} {TOKEN}"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert b"# HELP " in response.content
