"""The web pages' security headers, cookies and CSRF: a strict Content-Security-Policy that
the pages' markup satisfies (no inline script, handler or style element without the nonce),
no framing, HSTS and Secure, host-bound cookies only over TLS, and forged posts refused."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx
import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.test import Client

from tests.factories import TEST_PASSWORD, MembershipFactory, UserFactory

TENANT_PAGES = [
    "/",
    "/keys/",
    "/api-keys/",
    "/members/",
    "/power-level/",
    "/playground/",
    "/usage/dashboard/",
    "/usage/spending/",
]
ADMIN_PAGES = [
    "/admin/",
    "/admin/routing/catalogmodel/",
    "/admin/providers/provider/",
    "/admin/tenants/tenant/add/",
    "/admin/usage/usagerecord/",
]


def policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    directives = (part.strip().split() for part in header.split(";") if part.strip())
    return {name: values for name, *values in directives}


class InlineCode(HTMLParser):
    """What a strict policy would refuse in a page: inline scripts and handlers, javascript:
    URLs, and style elements or scripts without the response's nonce."""

    def __init__(self, nonce: str | None) -> None:
        super().__init__()
        self.nonce = nonce
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}>")
            if name in ("href", "src", "action") and (value or "").strip().lower().startswith(
                "javascript:"
            ):
                self.found.append(f"<{tag} {name}=javascript:>")
        nonced = self.nonce is not None and attributes.get("nonce") == self.nonce
        is_data = attributes.get("type") in ("application/json", "application/ld+json")
        if tag == "script" and not attributes.get("src") and not nonced and not is_data:
            self.found.append("<script> inline")
        if tag == "style" and not nonced:
            self.found.append("<style> without the nonce")


def inline_code(response) -> list[str]:
    nonce = re.search(r"'nonce-([^']+)'", response["Content-Security-Policy"])
    parser = InlineCode(nonce.group(1) if nonce else None)
    parser.feed(response.content.decode())
    return parser.found


@pytest.fixture
def owner_client(client, tenant):
    client.force_login(MembershipFactory(tenant=tenant, role="owner").user)
    return client


def test_pages_carry_a_strict_policy_and_no_framing(owner_client):
    for path in TENANT_PAGES:
        response = owner_client.get(path, follow=True)
        assert response.status_code == 200, path
        csp = policy(response)
        assert csp["script-src"][0] == "'self'", path
        assert not {"'unsafe-inline'", "'unsafe-eval'"} & set(csp["script-src"]), path
        assert "'unsafe-inline'" not in csp["style-src"], path
        assert csp["default-src"] == ["'self'"]
        assert csp["frame-ancestors"] == ["'none'"]
        assert csp["object-src"] == ["'none'"]
        assert csp["base-uri"] == ["'none'"]
        assert csp["form-action"] == ["'self'"]
        assert response["X-Frame-Options"] == "DENY"
        assert response["Referrer-Policy"] == "same-origin"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Cross-Origin-Opener-Policy"] == "same-origin"


def test_tenant_pages_hold_no_inline_script_handler_or_style_element(client, tenant):
    assert inline_code(client.get("/login/")) == []

    client.force_login(MembershipFactory(tenant=tenant, role="owner").user)
    for path in TENANT_PAGES:
        response = client.get(path, follow=True)
        assert response.status_code == 200, path
        assert inline_code(response) == [], path
    # The page that shows a new API key once (its copy buttons are page.js's).
    created = client.post("/api-keys/new/", {"name": "ci", "scopes": ["models"]}, follow=True)
    assert created.status_code == 200
    assert b"data-copy=" in created.content
    assert inline_code(created) == []


def test_admin_pages_hold_no_inline_script_or_handler(client, world):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    for path in [*ADMIN_PAGES, f"/admin/routing/catalogmodel/{world.models['sim-eco'].pk}/change/"]:
        response = client.get(path)
        assert response.status_code == 200, path
        assert inline_code(response) == [], path
        assert response["X-Frame-Options"] == "DENY"


def test_the_api_docs_load_only_local_scripts_and_nonce_their_style(client, db):
    client.force_login(UserFactory())
    response = client.get("/api/docs/")

    assert response.status_code == 200
    html = response.content.decode()
    assert inline_code(response) == []
    assert "cdn.jsdelivr.net" not in html
    scripts = re.findall(r'<script src="([^"]+)"', html)
    assert scripts
    assert all(src.startswith("/") for src in scripts)
    # The start-up script is served from the page's own URL, as JavaScript.
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in script.content.decode()


def test_cookies_are_http_only_and_same_site_without_tls(client, member):
    page = client.get("/login/")
    csrf = page.cookies["csrftoken"]
    assert csrf["httponly"]
    assert csrf["samesite"] == "Lax"
    assert not csrf["secure"]

    response = client.post("/login/", {"username": member.username, "password": TEST_PASSWORD})

    session = response.cookies["sessionid"]
    assert session["httponly"]
    assert session["samesite"] == "Lax"
    assert "Strict-Transport-Security" not in response


def test_a_post_without_the_csrf_token_is_refused(tenant, member):
    client = Client(enforce_csrf_checks=True)
    assert (
        client.post("/login/", {"username": member.username, "password": TEST_PASSWORD}).status_code
        == 403
    )

    owner = MembershipFactory(tenant=tenant, role="owner").user
    client.force_login(owner)
    page = client.get("/api-keys/")
    token = page.cookies["csrftoken"].value
    refused = client.post("/api-keys/new/", {"name": "forged", "scopes": ["models"]})
    assert refused.status_code == 403
    assert b"Form refused" in refused.content
    assert inline_code(refused) == []
    # The token, but posted from another site: Django checks the Origin against the host.
    forged = client.post(
        "/api-keys/new/",
        {"name": "cross-site", "scopes": ["models"], "csrfmiddlewaretoken": token},
        HTTP_ORIGIN="https://evil.example",
    )
    assert forged.status_code == 403
    assert not tenant.api_keys.filter(name__in=["forged", "cross-site"]).exists()
    # The management API with a session is held to CSRF too.
    response = client.post(
        "/api/v1/api-keys",
        {"name": "api-forged", "scopes": ["models"]},
        content_type="application/json",
    )
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert not tenant.api_keys.filter(name="api-forged").exists()


# --- over TLS (a production-like process behind a proxy that terminates TLS) ------------------


@pytest.fixture
def tls_process(gateway, gateway_process):
    # uvicorn believes X-Forwarded-Proto from loopback (its --forwarded-allow-ips default),
    # so the test speaks as the TLS-terminating proxy.
    return gateway_process(SWITCHYARD_TLS="true", DEBUG="false")


def test_over_tls_hsts_is_sent_and_cookies_are_secure_and_host_bound(tls_process, world):
    user = UserFactory(username="tls-user")
    # The process checks passwords with the real hashers, not the tests' fast MD5.
    hasher = PBKDF2PasswordHasher()
    user.password = hasher.encode(TEST_PASSWORD, hasher.salt())
    user.save(update_fields=["password"])
    MembershipFactory(tenant=world.tenant, user=user, role="owner")
    https = {"X-Forwarded-Proto": "https"}
    with httpx.Client(base_url=tls_process.url, headers=https, timeout=10) as browser:
        page = browser.get("/login/")
        assert page.status_code == 200
        hsts = page.headers["strict-transport-security"]
        assert hsts == "max-age=31536000; includeSubDomains"  # preload is the operator's call
        csrf_cookie = next(c for c in page.headers.get_list("set-cookie") if "csrftoken" in c)
        assert csrf_cookie.startswith("__Host-csrftoken=")
        assert_flags(csrf_cookie)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)

        # A Secure cookie goes back over https only: the proxy's side of this connection.
        response = browser.post(
            "/login/",
            data={"username": "tls-user", "password": TEST_PASSWORD, "csrfmiddlewaretoken": token},
            headers={
                "Origin": f"https://127.0.0.1:{tls_process.port}",
                "Cookie": csrf_cookie.split(";", 1)[0],
            },
        )
    assert response.status_code == 302, response.text
    session_cookie = next(c for c in response.headers.get_list("set-cookie") if "session" in c)
    assert session_cookie.startswith("__Host-sessionid=")
    assert_flags(session_cookie)


def assert_flags(cookie: str) -> None:
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"secure", "httponly", "samesite=lax", "path=/"} <= flags
    assert not any(flag.startswith("domain=") for flag in flags)


def test_a_client_cannot_claim_https_with_a_header(client, db, settings):
    # uvicorn sets the scheme from X-Forwarded-Proto of its trusted proxies only; Django
    # must not believe the header from anyone on its own.
    settings.SECURE_HSTS_SECONDS = 3600

    claimed = client.get("/login/", HTTP_X_FORWARDED_PROTO="https")
    real = client.get("/login/", secure=True)

    assert "Strict-Transport-Security" not in claimed
    assert real["Strict-Transport-Security"].startswith("max-age=3600")
