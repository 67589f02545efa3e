"""Compat tests: one real `spacehub serve` (process runtime) per module, its apps started in parallel, and one
Chromium per module that drives the same apps as a visitor does (tests/compat/pagekit.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e.browserkit import CHROMIUM, CHROMIUM_ARGS
from playwright.sync_api import Browser, sync_playwright

from support.server import Server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("compat") / "data")
    srv.start()
    yield srv
    srv.stop()
    srv.kill_apps()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Module scope: Playwright's sync API keeps an event loop running in this thread while it is open, and later
    # tests in the same run (the unit tests) call asyncio.run().
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run deploy/setup/system.sh (as root) first")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
