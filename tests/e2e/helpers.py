"""Helpers of the browser tests: log in, take a screenshot, run a prompt in the playground."""

from __future__ import annotations

import re
from pathlib import Path

from tests.factories import TEST_PASSWORD

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
MOBILE = {"width": 390, "height": 844}


def login(page, user, password: str = TEST_PASSWORD) -> None:
    """Log in through the login form; ends on the page the site sends a member to."""
    page.goto("/login/")
    page.get_by_label("Username").fill(user.get_username())
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/login/" not in url)
    # The header shows who is signed in on every tenant page.
    page.get_by_role("button", name="Log out").wait_for()


def shot(page, name: str) -> Path:
    """A full-page PNG in tests/e2e/screenshots/<name>.png (overwritten on each run)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def run_playground(page, prompt: str, level: str = "eco") -> None:
    """Send `prompt` at `level` from the playground and wait for the answer to finish."""
    from playwright.sync_api import expect

    page.goto("/playground/")
    page.get_by_label("Prompt").fill(prompt)
    page.get_by_label("Power level or model").select_option(level)
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#pg-status")).to_have_text(re.compile(r"^Done in "), timeout=15_000)
