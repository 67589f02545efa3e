"""The fork-server's record of environment reads at import, and the re-run that refreshes them in a child.

Real modules (written to a temporary package and really imported), the real os.environ; no fork needed: the
re-run is what an app child does after replacing os.environ.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from spacehub_runner.runtimes.forkserver_main import EnvReads

CONSTANTS = """
import os

PORT = int(os.getenv("PROBE_PORT", "7860"))
URL = "http://localhost:" + str(PORT)
CACHE = os.path.join(os.path.expanduser("~"), ".cache")
UNTOUCHED = os.getenv("PROBE_OTHER", "same")
ALL = dict(os.environ)  # a scan: not a read of every variable


class Config:
    LEVEL = os.getenv("PROBE_LEVEL", "info")  # in a class body: cannot be re-run
"""

USER = """
import os

from {pkg}.constants import PORT
from {pkg} import constants

modules_dir = os.getenv("PROBE_MODULES", os.path.join(constants.CACHE, "modules"))
"""


@pytest.fixture
def probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[EnvReads, ModuleType, ModuleType]]:
    pkg = f"probe_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / pkg
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    (folder / "constants.py").write_text(CONSTANTS)
    (folder / "user.py").write_text(USER.format(pkg=pkg))
    monkeypatch.syspath_prepend(str(tmp_path))
    for key in ("PROBE_PORT", "PROBE_LEVEL", "PROBE_MODULES", "PROBE_OTHER"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "server-home"))
    reads = EnvReads()
    reads.install()
    try:
        __import__(f"{pkg}.user")
    finally:
        reads.uninstall()
    try:
        yield reads, sys.modules[f"{pkg}.constants"], sys.modules[f"{pkg}.user"]
    finally:
        for name in [name for name in sys.modules if name.startswith(pkg)]:
            del sys.modules[name]


def test_reads_by_assignments_are_placed_and_reads_elsewhere_refuse(probe: tuple[EnvReads, ModuleType,
                                                                                 ModuleType]) -> None:
    reads, constants, user = probe
    assert {"PROBE_PORT", "HOME", "PROBE_MODULES"} <= set(reads.sites)
    assert reads.refusal({"PROBE_PORT", "HOME", "PROBE_MODULES", "SPACE_ID"}) is None
    refusal = reads.refusal({"PROBE_LEVEL"})
    assert refusal is not None and "PROBE_LEVEL" in refusal and "cannot be re-run" in refusal


def test_a_scan_of_the_whole_environment_is_not_a_read_of_each_variable(
        probe: tuple[EnvReads, ModuleType, ModuleType]) -> None:
    reads, _, _ = probe
    assert len(os.environ) >= 8  # (so that dict(os.environ) reads more than a scan's worth)
    assert "PATH" not in reads.sites and "PATH" not in reads.unplaced
    assert reads.refusal({"PATH", "SOME_VARIABLE_OF_A_SPACE"}) is None


def test_rerun_refreshes_values_their_dependents_and_copies(probe: tuple[EnvReads, ModuleType, ModuleType],
                                                            monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    reads, constants, user = probe
    assert constants.PORT == 7860 and user.PORT == 7860
    server_cache = constants.CACHE
    monkeypatch.setenv("PROBE_PORT", "9999")
    monkeypatch.setenv("HOME", str(tmp_path / "space-home"))
    reads.rerun({"PROBE_PORT", "HOME"})
    assert constants.PORT == 9999
    assert constants.URL == "http://localhost:9999"  # a later assignment using the re-bound name
    assert user.PORT == 9999  # `from constants import PORT`: the copy is re-bound too
    assert constants.CACHE == str(tmp_path / "space-home" / ".cache") != server_cache
    modules_folder = str(tmp_path / "space-home" / ".cache" / "modules")
    assert user.modules_dir == modules_folder  # a statement elsewhere using constants.CACHE
    assert constants.UNTOUCHED == "same"
    assert constants.Config.LEVEL == "info"


def test_rerun_of_nothing_changes_nothing(probe: tuple[EnvReads, ModuleType, ModuleType]) -> None:
    reads, constants, user = probe
    before = dict(vars(constants))
    reads.rerun(set())
    assert dict(vars(constants)) == before
