"""Compat tests: one real `spacehub serve` (process runtime) per module, its apps started in parallel, and one
Chromium per module that drives the same apps as a visitor does (tests/compat/pagekit.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2e.browserkit import launched_chromium
from playwright.sync_api import Browser

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
    with launched_chromium() as chromium:
        yield chromium
