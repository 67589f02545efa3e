"""The UI follows the system's colour scheme: dark when the browser prefers dark, light otherwise."""

from __future__ import annotations

import pytest
from browserkit import WIDE, shot, sign_in
from playwright.sync_api import Browser

from support.server import Server

pytestmark = pytest.mark.browser

DARK_BG = "rgb(11, 16, 32)"
LIGHT_BG = "rgb(247, 248, 250)"


@pytest.mark.parametrize(("scheme", "background"), [("dark", DARK_BG), ("light", LIGHT_BG)])
def test_colours_follow_the_system_setting(browser: Browser, server: Server, scheme: str, background: str) -> None:
    context = browser.new_context(viewport=WIDE, base_url=server.url, color_scheme=scheme)  # type: ignore[arg-type]
    try:
        sign_in(context.new_page(), "alice")
        page = context.new_page()
        page.goto("/new-space")
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == background
        field = page.evaluate("getComputedStyle(document.querySelector('select#hardware')).backgroundColor")
        assert (field == "rgb(15, 21, 36)") == (scheme == "dark")
        shot(page, f"theme-{scheme}-new-space")
    finally:
        context.close()
