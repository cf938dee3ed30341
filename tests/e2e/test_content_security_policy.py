"""Every page works under the Content-Security-Policy: the browser reports no violation on the
tenant pages, the playground's streamed request, htmx forms, the admin and the API docs."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import login, run_playground, shot
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.e2e

# Collected in the page: a violation is an event on the document, whatever caused it.
WATCH_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  const where = `${e.sourceFile}:${e.lineNumber}`;
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI} ${where}`);
});
"""


def watch(page) -> list[str]:
    """Record CSP violations of every document the page loads, and the console's reports."""
    reports: list[str] = []
    page.add_init_script(WATCH_VIOLATIONS)
    page.on(
        "console",
        lambda m: reports.append(m.text) if "Content Security Policy" in m.text else None,
    )
    return reports


def violations(page, reports: list[str]) -> list[str]:
    return [*page.evaluate("window.__cspViolations || []"), *reports]


def visit(page, reports: list[str], path: str) -> None:
    response = page.goto(path)
    assert response.status == 200, path
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    page.wait_for_load_state("networkidle")
    assert violations(page, reports) == [], path


def test_tenant_pages_run_without_a_csp_violation(page, world):
    owner = UserFactory(username="csp-owner")
    MembershipFactory(tenant=world.tenant, user=owner, role="owner")
    reports = watch(page)
    login(page, owner)

    for path in ("/", "/keys/", "/api-keys/", "/members/", "/power-level/", "/usage/spending/"):
        visit(page, reports, path)

    # htmx posts the add-key form and swaps the answer in (its indicator styles come from
    # app.css, not an inline style element).
    visit(page, reports, "/keys/")
    add = page.get_by_role("region", name="Add a key")
    add.get_by_label("Provider", exact=True).select_option(label="sim-openai")
    add.get_by_label("API key", exact=True).fill("sim-csp-key-1234")
    add.get_by_role("button", name="Check and save key").click()
    expect(page.get_by_role("status").first).to_contain_text("works and is saved")

    # The playground streams from /v1 with fetch (connect-src) and fills the page in.
    run_playground(page, "Say hello under a strict policy")
    visit(page, reports, "/usage/dashboard/")
    page.get_by_label("Period").select_option("custom")  # page.js, not an inline handler
    expect(page.locator("#custom-dates")).to_be_visible()
    shot(page, "csp-dashboard")
    assert violations(page, reports) == []


def test_admin_and_api_docs_run_without_a_csp_violation(page, world):
    staff = UserFactory(username="csp-staff", is_staff=True, is_superuser=True)
    reports = watch(page)
    page.goto("/admin/login/")
    page.get_by_label("Username").fill(staff.username)
    page.get_by_label("Password").fill("correct-horse-battery-staple")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/login/" not in url)

    for path in (
        "/admin/",
        "/admin/routing/catalogmodel/",
        f"/admin/routing/catalogmodel/{world.models['sim-eco'].pk}/change/",
        "/admin/providers/provider/",
        "/admin/tenants/tenant/add/",
    ):
        visit(page, reports, path)

    visit(page, reports, "/api/docs/")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Switchyard API")
    expect(page.locator(".opblock").first).to_be_visible()
    shot(page, "csp-api-docs")
    assert violations(page, reports) == []
