"""Names and messages Switchyard does not write itself (model names from catalog sync,
provider names, upstream error messages) reach the pages escaped: as text, never markup."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
from django.test import Client
from django.utils import timezone

from providers.choices import HealthStatus
from tests.factories import (
    CatalogModelFactory,
    MembershipFactory,
    ProviderKeyFactory,
    UsageRecordFactory,
    UserFactory,
)
from tests.world_fixtures import add_provider, platform_key
from usage import charts
from usage.choices import Outcome
from usage.rollups import roll_up_usage

MODEL = "<script>alert(1)</script>"
MODEL_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
PROVIDER = '<img src=x onerror="alert(2)">'
PROVIDER_ESCAPED = "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;"
# Breaks out of an attribute if it is not escaped there.
MESSAGE = '"><svg onload=alert(3)><b>upstream said no</b>'
MESSAGE_ESCAPED = "&quot;&gt;&lt;svg onload=alert(3)&gt;&lt;b&gt;upstream said no&lt;/b&gt;"
RAW = ("<script>alert(1)", "<img src=x", "<svg onload", "<b>upstream")


def assert_escaped(html: str, *escaped: str) -> None:
    for raw in RAW:
        assert raw not in html
    for text in escaped:
        assert text in html


@pytest.fixture
def hostile_model(world):
    """A provider and a model named with markup, served by the simulator like any other."""
    provider = add_provider(world.sim.url, "hostile")
    provider.name = PROVIDER
    provider.save(update_fields=["name"])
    platform_key(provider, "sim-platform-hostile-0009")
    CatalogModelFactory(
        provider=provider,
        model_id="sim-eco",
        name=MODEL,
        input_price_per_mtok=Decimal("0.10"),
        output_price_per_mtok=Decimal("0.40"),
    )
    world.gateway.sync()
    return provider


def owner_client(world) -> Client:
    client = Client()
    client.force_login(MembershipFactory(tenant=world.tenant, role="owner").user)
    return client


def test_a_model_served_through_the_gateway_is_escaped_on_the_dashboard(world, hostile_model):
    response = httpx.post(
        f"{world.base_url}/chat/completions",
        headers=world.headers(),
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-switchyard-model"] == MODEL
    world.gateway.flush_usage()
    roll_up_usage(now=timezone.now())

    page = owner_client(world).get("/usage/dashboard/?period=24h")

    assert page.status_code == 200
    assert_escaped(page.content.decode(), MODEL_ESCAPED, PROVIDER_ESCAPED)


@pytest.mark.parametrize("path", ["/playground/", "/power-level/", "/keys/"])
def test_hostile_catalog_names_are_escaped_on_the_tenant_pages(world, hostile_model, path):
    page = owner_client(world).get(path)

    assert page.status_code == 200
    html = page.content.decode()
    assert_escaped(html)
    assert MODEL_ESCAPED in html or PROVIDER_ESCAPED in html


def test_hostile_catalog_names_are_escaped_in_the_admin(world, hostile_model):
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))

    models = client.get("/admin/routing/catalogmodel/").content.decode()
    providers = client.get("/admin/providers/provider/").content.decode()

    assert_escaped(models, MODEL_ESCAPED)
    assert_escaped(providers, PROVIDER_ESCAPED)


def test_an_upstream_error_message_is_escaped_on_the_keys_page(world):
    ProviderKeyFactory(tenant=world.tenant, provider=world.openai, last_error=MESSAGE)

    page = owner_client(world).get("/keys/")

    assert page.status_code == 200
    assert_escaped(page.content.decode(), MESSAGE_ESCAPED[:60])


def test_an_upstream_error_message_is_escaped_in_the_recent_requests(world):
    UsageRecordFactory(
        tenant=world.tenant,
        outcome=Outcome.UPSTREAM_ERROR,
        http_status=502,
        error=MESSAGE,
        provider_id=world.openai.pk,
        model_id=world.models["sim-eco"].pk,
    )

    page = owner_client(world).get("/usage/dashboard/?period=24h")

    assert page.status_code == 200
    assert_escaped(page.content.decode(), MESSAGE_ESCAPED)


def test_a_provider_health_error_is_escaped_in_the_admin(world):
    world.openai.health_status = HealthStatus.DOWN
    world.openai.health_error = MESSAGE
    world.openai.save(update_fields=["health_status", "health_error"])
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))

    html = client.get("/admin/providers/provider/").content.decode()

    assert_escaped(html, MESSAGE_ESCAPED)


def test_the_svg_charts_escape_every_text_they_draw():
    column = charts.Column(tick=MODEL, values=(3.0, 1.0), title=MESSAGE)
    row = charts.Row(label=PROVIDER, parts=((MODEL, 2.0), (MESSAGE, 1.0)), title=MESSAGE)
    hostile = charts.Series(MESSAGE, css_class='bar" onclick="alert(4)', style='" onload="x')

    svg = "".join(
        [
            charts.column_chart(
                [column],
                series=[charts.REQUESTS, hostile],
                chart_id='c"><script>',
                title=MODEL,
                description=MESSAGE,
            ),
            charts.line_chart([column], chart_id="line", title=MODEL, description=MESSAGE),
            charts.bar_rows([row], chart_id="rows", title=PROVIDER, description=MODEL),
            charts.legend([hostile]),
        ]
    )

    assert_escaped(svg, MODEL_ESCAPED, PROVIDER_ESCAPED, MESSAGE_ESCAPED)
    assert 'onclick="alert(4)' not in svg
    assert 'onload="x' not in svg
    assert "<script>" not in svg
