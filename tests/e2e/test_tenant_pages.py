"""What a tenant's people see in the browser: provider keys, power level, playground, usage,
API keys, and the pages a role may not open. Every page visited is saved as a screenshot."""

from __future__ import annotations

import csv
import io
import re

import httpx
import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.e2e.helpers import MOBILE, login, run_playground, shot
from tests.factories import ProviderKeyFactory
from usage.rollups import roll_up_usage
from usage.selectors import EXPORT_COLUMNS

pytestmark = pytest.mark.e2e

GOOD_SECRET = "sim-owner-key-1234"
BAD_SECRET = "sim-bad-owner-key-9876"


def tenant_keys(page):
    return page.get_by_role("region", name="Tenant keys")


def test_owner_adds_a_provider_key_and_sees_it_masked(page, world, acme_owner):
    login(page, acme_owner)
    page.goto("/keys/")
    expect(page.get_by_role("heading", name="Provider keys", level=1)).to_be_visible()
    expect(tenant_keys(page).get_by_text("No keys yet")).to_be_visible()
    shot(page, "01-keys-empty")

    add = page.get_by_role("region", name="Add a key")
    add.get_by_label("Provider", exact=True).select_option(label="sim-openai")
    add.get_by_label("API key", exact=True).fill(BAD_SECRET)
    add.get_by_role("button", name="Check and save key").click()
    refusal = page.get_by_role("region", name="Add a key").get_by_role("alert")
    expect(refusal).to_contain_text("Nothing was saved")
    expect(tenant_keys(page).get_by_text("No keys yet")).to_be_visible()
    assert BAD_SECRET not in page.content()
    shot(page, "01-keys-refused")

    add = page.get_by_role("region", name="Add a key")
    add.get_by_label("Provider", exact=True).select_option(label="sim-openai")
    add.get_by_label("Label").fill("production")
    add.get_by_label("API key", exact=True).fill(GOOD_SECRET)
    add.get_by_role("button", name="Check and save key").click()
    expect(page.get_by_role("status").first).to_contain_text(
        "The sim-openai key ••••1234 works and is saved as a tenant key."
    )
    row = tenant_keys(page).get_by_role("row").filter(has_text="••••1234")
    expect(row).to_contain_text("sim-openai")
    expect(row).to_contain_text("production")
    expect(row.get_by_role("cell").nth(1)).to_have_text("Active")
    html = page.content()
    assert GOOD_SECRET not in html
    assert BAD_SECRET not in html
    shot(page, "01-keys-added")


def test_viewer_is_refused_the_key_pages_but_sees_usage_and_spending(page, world, acme_viewer):
    login(page, acme_viewer)
    nav = page.get_by_role("navigation", name="Sections")
    expect(nav.get_by_role("link", name="Usage")).to_be_visible()
    expect(nav.get_by_role("link", name="Provider keys")).to_have_count(0)
    expect(nav.get_by_role("link", name="API keys")).to_have_count(0)

    for path, name in [("/keys/", "06-viewer-keys-403"), ("/api-keys/", "06-viewer-api-keys-403")]:
        response = page.goto(path)
        assert response.status == 403
        expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
        expect(
            page.get_by_text("Your role in this tenant does not allow this page.")
        ).to_be_visible()
        shot(page, name)

    response = page.goto("/usage/dashboard/")
    assert response.status == 200
    expect(page.get_by_role("heading", name="Usage", level=1)).to_be_visible()
    shot(page, "06-viewer-dashboard")

    nav.get_by_role("link", name="Spending").click()
    expect(page.get_by_role("heading", name="Spending", level=1)).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("^Save"))).to_have_count(0)
    shot(page, "06-viewer-spending")


def test_owner_switches_the_tenant_power_level(page, world, acme_owner):
    login(page, acme_owner)
    page.goto("/power-level/")
    expect(page.get_by_role("heading", name="Power level", level=1)).to_be_visible()
    defaults = page.get_by_role("region", name="Tenant default")
    levels = defaults.get_by_role("group", name="Default power level")
    expect(levels.get_by_role("radio", name=re.compile(r"^Balanced"))).to_be_checked()
    shot(page, "02-power-level-before")

    levels.get_by_role("radio", name=re.compile(r"^Precision")).check()
    defaults.get_by_role("button", name="Save tenant default").click()

    expect(page.get_by_role("status").first).to_have_text(
        "Tenant defaults saved; the next request uses them."
    )
    levels = page.get_by_role("region", name="Tenant default").get_by_role(
        "group", name="Default power level"
    )
    expect(levels.get_by_role("radio", name=re.compile(r"^Precision"))).to_be_checked()
    expect(levels.get_by_role("radio", name=re.compile(r"^Balanced"))).not_to_be_checked()
    # The level cards mark the new default, and "auto" now means Precision for the owner.
    expect(page.locator("#level-precision").get_by_text("Tenant default")).to_be_visible()
    expect(page.locator("#level-balanced").get_by_text("Tenant default")).to_have_count(0)
    expect(page.get_by_role("main")).to_contain_text("use Precision for you (the tenant default)")
    shot(page, "02-power-level-saved")


def test_owner_runs_a_prompt_in_the_playground(page, world, acme_owner):
    login(page, acme_owner)
    run_playground(page, "Say hello to the e2e suite", level="eco")

    expect(page.get_by_role("alert")).to_be_hidden()
    answer = page.locator("#pg-answer")
    expect(answer).not_to_have_text("")
    expect(answer).not_to_contain_text("The answer streams in here.")
    expect(answer).not_to_contain_text("No answer.")
    facts = page.get_by_label("How the request was served")
    expect(facts.locator("#pg-provider")).to_have_text("sim-openai")
    expect(facts.locator("#pg-model-used")).to_have_text("sim-eco")
    expect(facts.locator("#pg-cost")).to_have_text(re.compile(r"^\$0\.\d+$"))
    expect(facts.locator("#pg-attempts")).to_have_text("1")
    expect(facts.locator("#pg-tokens")).to_have_text(re.compile(r"^\d+ / \d+$"))
    shot(page, "03-playground-answer")
    # The answer came as a stream: the simulator was asked for one.
    assert [(entry["model"], entry["stream"]) for entry in world.sim.log] == [("sim-eco", True)]


def test_owner_sees_the_playground_request_on_the_dashboard_and_exports_it(page, world, acme_owner):
    login(page, acme_owner)
    run_playground(page, "Count this request on the dashboard", level="eco")
    # Written, not rolled up: the dashboard counts the hours since the last rollup run from
    # the raw records, so the request shows before the hourly job has run.
    world.gateway.flush_usage()

    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Usage").click()
    expect(page).to_have_url(re.compile(r"/usage/dashboard/$"))
    expect(page.get_by_role("heading", name="Usage", level=1)).to_be_visible()
    requests_tile = page.locator("#tiles .stat").filter(has_text="Requests")
    expect(requests_tile.locator(".value")).to_have_text(re.compile(r"^[1-9]\d*$"))
    recent = page.get_by_role("region", name="Recent requests")
    row = recent.get_by_role("row").filter(has_text="sim-openai · sim-eco")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("user:olivia")
    expect(row).to_contain_text("stream")
    chart = page.get_by_role("region", name="Requests over time").get_by_role("img")
    expect(chart).to_have_count(1)
    expect(chart).to_be_visible()
    shot(page, "04-dashboard")

    # Filters live in the address; the last 24 hours still hold the request.
    filters = page.get_by_role("form", name="Filters")
    filters.get_by_label("Period").select_option(label="Custom dates")
    expect(filters.get_by_label("From (UTC day)")).to_be_visible()
    shot(page, "04-dashboard-custom-dates")
    filters.get_by_label("Period").select_option(label="Last 24 hours")
    filters.get_by_role("button", name="Apply filters").click()
    expect(page).to_have_url(re.compile(r"period=24h"))
    expect(requests_tile.locator(".value")).to_have_text(re.compile(r"^[1-9]\d*$"))

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download CSV").click()
    download = download_info.value
    assert download.suggested_filename.startswith("usage-acme-")
    assert download.suggested_filename.endswith(".csv")
    with open(download.path(), encoding="utf-8") as exported:
        rows = list(csv.reader(io.StringIO(exported.read())))
    assert tuple(rows[0]) == EXPORT_COLUMNS
    assert len(rows) >= 2
    record = dict(zip(rows[0], rows[1], strict=True))
    assert (record["provider"], record["model"]) == ("sim-openai", "sim-eco")

    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Spending").click()
    expect(page.get_by_role("heading", name="Spending", level=1)).to_be_visible()
    expect(page.get_by_role("region", name="Credits")).to_contain_text("$100")
    shot(page, "04-spending")


def test_owner_creates_an_api_key_uses_it_and_revokes_it(page, world, acme_owner):
    login(page, acme_owner)
    page.goto("/api-keys/")
    expect(page.get_by_role("heading", name="API keys", level=1)).to_be_visible()
    shot(page, "05-api-keys-list")

    new_key = page.get_by_role("region", name="Create a key")
    new_key.get_by_label("Name").fill("e2e robot")
    new_key.get_by_role("button", name="Create key").click()

    expect(page.get_by_role("heading", name="API key “e2e robot” created")).to_be_visible()
    raw_key = page.locator("#raw-key").inner_text().strip()
    assert raw_key.startswith("sy-")
    copy = page.get_by_role("button", name="Copy", exact=True)
    expect(copy).to_be_visible()
    copy.click()
    expect(page.get_by_text("Copied to the clipboard.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == raw_key
    shot(page, "05-api-key-created")

    world.gateway.wait_for_config()
    body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
    chat = f"{world.base_url}/chat/completions"
    answer = httpx.post(chat, headers=world.headers(raw_key), json=body, timeout=10)
    assert answer.status_code == 200, answer.text

    page.get_by_role("link", name="Back to API keys").click()
    assert raw_key not in page.content()  # shown once, on the page that created it
    row = page.get_by_role("row").filter(has_text="e2e robot")
    expect(row).to_contain_text(raw_key[:8])
    expect(row).to_contain_text("Active")
    row.get_by_role("link", name="Revoke e2e robot").click()

    expect(page.get_by_role("heading", name="Revoke “e2e robot”?")).to_be_visible()
    shot(page, "05-api-key-confirm-revoke")
    page.get_by_role("button", name="Revoke key").click()

    expect(page.get_by_role("status").first).to_contain_text("“e2e robot”")
    expect(page.get_by_role("status").first).to_contain_text("is revoked")
    row = page.get_by_role("row").filter(has_text="e2e robot")
    expect(row).to_contain_text("Revoked")
    expect(row.get_by_role("link", name=re.compile("^Revoke"))).to_have_count(0)
    shot(page, "05-api-key-revoked")

    world.gateway.wait_for_config()
    refused = httpx.post(chat, headers=world.headers(raw_key), json=body, timeout=10)
    assert refused.status_code == 401, refused.text


def test_member_uses_the_playground_but_not_the_api_keys_page(page, world, acme_member):
    login(page, acme_member)
    nav = page.get_by_role("navigation", name="Sections")
    expect(nav.get_by_role("link", name="Playground")).to_be_visible()
    expect(nav.get_by_role("link", name="API keys")).to_have_count(0)

    run_playground(page, "A member asks", level="auto")
    expect(page.locator("#pg-provider")).not_to_have_text("—")
    shot(page, "07-member-playground")

    response = page.goto("/api-keys/")
    assert response.status == 403
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    shot(page, "07-member-api-keys-403")


def phone_page(new_context, user):
    page = new_context(viewport=MOBILE, is_mobile=True, has_touch=True).new_page()
    login(page, user)
    return page


def assert_fits(page) -> None:
    """Nothing is wider than the screen: the page itself never scrolls sideways."""
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= MOBILE["width"], (
        f"{page.url} is {width} px wide on a {MOBILE['width']} px phone"
    )


def test_dashboard_fits_a_phone(new_context, world, acme_owner):
    body = {"model": "eco", "messages": [{"role": "user", "content": "from a service"}]}
    chat = f"{world.base_url}/chat/completions"
    assert httpx.post(chat, headers=world.headers(), json=body, timeout=10).status_code == 200
    world.gateway.flush_usage()
    roll_up_usage(now=timezone.now())

    page = phone_page(new_context, acme_owner)
    page.goto("/usage/dashboard/")
    expect(page.locator("#tiles .stat").filter(has_text="Requests")).to_contain_text("1")
    shot(page, "07-mobile-dashboard")
    assert_fits(page)


def test_keys_page_fits_a_phone(new_context, world, acme_owner):
    ProviderKeyFactory(
        provider=world.openai, tenant=world.tenant, secret="sim-phone-key-5678", label="phone"
    )
    page = phone_page(new_context, acme_owner)
    page.goto("/keys/")
    expect(tenant_keys(page).get_by_role("row").filter(has_text="••••5678")).to_be_visible()
    shot(page, "07-mobile-keys")
    assert_fits(page)
