"""Compat tests: one real `spacehub serve` (process runtime) per module, its apps started in parallel."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.server import Server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("compat") / "data")
    srv.start()
    yield srv
    srv.stop()
    srv.kill_apps()
