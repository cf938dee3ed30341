"""Browser tests: Debian's Chromium driven by Playwright's sync API against the live gateway.

The live server (tests/gateway_fixtures.py) runs in its own thread with its own event loop;
Playwright's sync API runs its loop in the test's thread. The tests are plain `def`, so
pytest-asyncio leaves them alone. Without /usr/bin/chromium every test here is skipped
(CI installs it: .ci/run). Screenshots go to tests/e2e/screenshots/ (git-ignored).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.helpers import CHROMIUM, CHROMIUM_ARGS, DESKTOP, shot
from tests.factories import MembershipFactory, UserFactory

NO_CHROMIUM = f"browser tests need Chromium at {CHROMIUM} (apt-get install chromium)"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # The report of each phase on the item: `page` takes a screenshot when the test failed.
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(scope="package")
def browser(request):
    """One Chromium for tests/e2e, closed when the folder is done.

    Not session-scoped: Playwright's sync API keeps an event loop set on the main thread
    while it runs, which would break every later test of the suite (Django's ORM refuses
    to run "in an async context", pytest-asyncio cannot start its loops). `live_gateway`
    comes first so the test database is created before that loop exists, and dropped
    after it is gone. Meanwhile the tests' own ORM calls (factories, the database flush,
    rollups) are plain synchronous calls: DJANGO_ALLOW_ASYNC_UNSAFE lets them through.
    """
    if not CHROMIUM.exists():
        pytest.skip(NO_CHROMIUM)
    sync_api = pytest.importorskip("playwright.sync_api")
    request.getfixturevalue("live_gateway")
    with pytest.MonkeyPatch.context() as patch, sync_api.sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def new_context(browser, live_gateway):
    """Open a fresh browser context (cookies, storage) on the live gateway: `new_context(**kw)`."""
    contexts = []

    def make(**options):
        options.setdefault("viewport", DESKTOP)
        context = browser.new_context(
            base_url=live_gateway.url,
            accept_downloads=True,
            permissions=["clipboard-read", "clipboard-write"],
            **options,
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_context, request) -> Iterator:
    """A desktop page in its own context; an uncaught script error fails the test, and a
    failed test leaves a screenshot named after it."""
    page = new_context().new_page()
    script_errors: list[str] = []
    page.on("pageerror", lambda error: script_errors.append(f"{page.url}: {error}"))
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed and not page.is_closed():
        shot(page, f"FAILED-{request.node.name}")
    assert not script_errors, f"JavaScript errors: {script_errors}"


@pytest.fixture
def world(world):
    """The shared world; usage still queued is written before the database is flushed (a
    batch written during the flush can deadlock with it)."""
    yield world
    world.gateway.flush_usage()


def _person(world, role: str, username: str):
    user = UserFactory(username=username, email=f"{username}@acme.example")
    MembershipFactory(tenant=world.tenant, user=user, role=role)
    return user


@pytest.fixture
def acme_owner(world):
    return _person(world, "owner", "olivia")


@pytest.fixture
def acme_member(world):
    return _person(world, "member", "mike")


@pytest.fixture
def acme_viewer(world):
    return _person(world, "viewer", "vera")
