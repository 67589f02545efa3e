"""A misnamed or unreachable backing service stops a role at start with one line naming the setting and the
cause (not a driver's traceback): each case runs the real `spacehub` command."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from support.server import REPO


def _closed_port() -> int:
    # A port nothing listens on: bound and released (nothing else on this machine takes it within the test).
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(tmp_path: Path, command: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("SPACEHUB_")}
    full.update(SPACEHUB_DATA_DIR=str(tmp_path / "data"), SPACEHUB_PORT=str(_closed_port()),
                SPACEHUB_DATABASE_CONNECT_TIMEOUT_S="3", SPACEHUB_REDIS_CONNECT_TIMEOUT_S="3",
                PYTHONPATH=os.pathsep.join(str(REPO / p) for p in ("platform", "runner")), **env)
    return subprocess.run([sys.executable, "-m", "spacehub", command], env=full, capture_output=True, text=True,
                          timeout=120)


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout + result.stderr
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1, result.stdout + result.stderr
    return lines[0]


PORT = _closed_port()
CASES = {
    "database down": ({"SPACEHUB_DATABASE_URL": f"postgresql+psycopg://spacehub:hunter2@127.0.0.1:{PORT}/spacehub"},
                      ["SPACEHUB_DATABASE_URL", f"127.0.0.1:{PORT}", "Connection refused"]),
    "database driver missing": ({"SPACEHUB_DATABASE_URL": "postgresql+psycopg2://spacehub:hunter2@127.0.0.1/x"},
                                ["SPACEHUB_DATABASE_URL", "'psycopg2'", "not installed", "spacehub[postgres]"]),
    "database url garbled": ({"SPACEHUB_DATABASE_URL": "postgres//nohost"},
                             ["SPACEHUB_DATABASE_URL", "not a database URL", "postgresql+psycopg://"]),
    "database kind unknown": ({"SPACEHUB_DATABASE_URL": "oracel://a@b/c"},
                              ["SPACEHUB_DATABASE_URL", "unknown database kind 'oracel'"]),
    "redis down": ({"SPACEHUB_REDIS_URL": f"redis://:hunter2@127.0.0.1:{PORT}/0"},
                   ["SPACEHUB_REDIS_URL", f"127.0.0.1:{PORT}", "Connection refused"]),
    "redis url garbled": ({"SPACEHUB_REDIS_URL": "http://127.0.0.1:6379"},
                          ["SPACEHUB_REDIS_URL", "not a Redis URL"]),
    "setting not a number": ({"SPACEHUB_DATABASE_POOL_SIZE": "many"}, ["SPACEHUB_DATABASE_POOL_SIZE", "integer"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_serve_says_one_line_naming_the_setting_and_the_cause(tmp_path: Path, case: str) -> None:
    env, expected = CASES[case]
    line = _one_line(_run(tmp_path, "serve", **env))
    for words in expected:
        assert words in line, line
    assert "hunter2" not in line  # the password is never printed


@pytest.mark.parametrize(("command", "case"), [("worker", "redis down"), ("supervisor", "redis down"),
                                               ("supervisor", "database down")])
def test_each_role_says_the_same_line(tmp_path: Path, command: str, case: str) -> None:
    env, expected = CASES[case]
    line = _one_line(_run(tmp_path, command, **env))
    for words in expected:
        assert words in line, line


def test_a_password_refused_by_postgres_is_named(tmp_path: Path) -> None:
    from support import pg

    if pg.backend() != "postgres":
        pytest.skip("needs the PostgreSQL cluster: runs in the `--db postgres` pass of `make test`")
    url = pg.database_url(tmp_path / "unused.db").replace(":" + pg.current_password() + "@", ":wrong-password@")
    line = _one_line(_run(tmp_path, "serve", SPACEHUB_DATABASE_URL=url))
    assert "SPACEHUB_DATABASE_URL" in line and "password authentication failed" in line, line
    assert "wrong-password" not in line
