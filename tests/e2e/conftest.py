"""Browser tests: real Chromium (Debian's, installed by deploy/setup/system.sh) driven by Playwright, against a
real `spacehub serve` on the process runtime.

Screenshots the tests take are saved under artifacts/screenshots/ (wide and narrow windows).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from browserkit import ADMINS, PASSWORDS, SCREENSHOTS, WIDE, launched_chromium, sign_in
from playwright.sync_api import Browser, BrowserContext

from support.server import Server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("e2e") / "data", ui_poll_s="0.5")
    srv.start()
    for name, password in PASSWORDS.items():
        srv.cli("users", "create", name, "--password", password, *(["--admin"] if name in ADMINS else []))
    yield srv
    srv.stop()
    srv.kill_apps()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched_chromium() as chromium:
        yield chromium


@pytest.fixture(scope="session", autouse=True)
def screenshots_dir() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture
def open_context(browser: Browser, server: Server) -> Iterator[Callable[..., BrowserContext]]:
    """New browser contexts (each its own cookie jar), closed after the test."""
    contexts: list[BrowserContext] = []

    def open_one(user: str | None = None, viewport: dict[str, int] | None = None) -> BrowserContext:
        context = browser.new_context(viewport=viewport or WIDE, base_url=server.url)
        context.set_default_timeout(30_000)
        contexts.append(context)
        if user is not None:
            sign_in(context.new_page(), user)
        return context

    yield open_one
    for context in contexts:
        context.close()
