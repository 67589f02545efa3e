"""The admin commands (`users`, `token`) against a running `spacehub serve`: they act on the server's data dir,
or refuse, changing nothing, when run with another one (a second terminal without the server's
SPACEHUB_DATA_DIR); a user created from the CLI can sign in to the web UI; revoked tokens stop working."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.server import Server

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("admin-cli") / "data")
    srv.start()
    yield srv
    srv.stop()
    srv.kill_apps()  # apps outlive serve on purpose (re-adoption); not past this module


def spacehub(server: Server, *args: str, data_dir: Path | None = None, stdin: str | None = None,
             database_url: str | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI as a second terminal runs it: on the server's data dir, or on another one whose database is its
    own (the default under it) unless `database_url` names one."""
    env = {**server.env, "SPACEHUB_DATA_DIR": str(data_dir or server.data_dir)}
    env.pop("SPACEHUB_TOKEN", None)
    if data_dir is not None:
        env.pop("SPACEHUB_DATABASE_URL")
    if database_url is not None:
        env["SPACEHUB_DATABASE_URL"] = database_url
    return subprocess.run([sys.executable, "-m", "spacehub", *args], env=env, capture_output=True, text=True,
                          timeout=120, input=stdin)


def test_another_data_dir_is_refused_and_left_untouched(server: Server, tmp_path: Path) -> None:
    other = tmp_path / "default-data-dir"
    for args in (["users", "create", "mallory"], ["token", "create", "--user", "admin"], ["users", "list"],
                 ["token", "list"], ["users", "passwd", "admin", "--password", "whatever-123"]):
        result = spacehub(server, *args, data_dir=other)
        assert result.returncode == 1, result
        assert f"uses another database than this command ({other}, sqlite:///{other}/spacehub.db)" in result.stderr
        assert not other.exists()  # nothing written there
    assert "mallory" not in spacehub(server, "users", "list").stdout


def test_another_data_dir_on_the_same_database_is_the_same_platform(server: Server, tmp_path: Path) -> None:
    """Separate roles on other machines have data dirs of their own and share the database: an admin command run
    there (no `serve` of its data dir anywhere) acts on the running platform."""
    elsewhere = tmp_path / "another-machine"
    created = spacehub(server, "users", "create", "grace", data_dir=elsewhere,
                       database_url=server.env["SPACEHUB_DATABASE_URL"])
    assert created.returncode == 0, created.stderr
    assert "grace" in spacehub(server, "users", "list").stdout.split()  # the server's own data dir sees them


def test_users_and_tokens_on_the_running_platform(server: Server) -> None:
    assert spacehub(server, "users", "create", "dora", "--password", "short").returncode == 1
    created = spacehub(server, "users", "create", "dora", "--password", "dora-password-1")
    assert created.returncode == 0, created.stderr
    listed = spacehub(server, "users", "list").stdout
    assert "dora\tpassword" in listed and "admin\tadmin" in listed

    secret = spacehub(server, "token", "create", "--user", "dora", "--name", "laptop").stdout.strip()
    api = httpx.Client(base_url=f"http://127.0.0.1:{server.port}", headers={"Host": f"localhost:{server.port}"})
    assert api.get("/api/whoami-v2", headers={"Authorization": f"Bearer {secret}"}).json()["name"] == "dora"
    rows = [line.split("\t") for line in spacehub(server, "token", "list", "--user", "dora").stdout.splitlines()]
    assert rows[0][:3] == ["id", "user", "name"]
    (row,) = rows[1:]
    assert row[1:3] == ["dora", "laptop"] and secret not in "\t".join(row)
    assert spacehub(server, "token", "revoke", row[0]).returncode == 0
    assert api.get("/api/whoami-v2", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    assert spacehub(server, "token", "revoke", row[0]).returncode == 1  # gone


def test_passwd_then_sign_in_to_the_web_ui(server: Server) -> None:
    assert spacehub(server, "users", "create", "erin").returncode == 0
    web = httpx.Client(base_url=f"http://127.0.0.1:{server.port}", headers={"Host": f"localhost:{server.port}"})
    # Prompted, hidden, twice (from stdin here).
    changed = spacehub(server, "users", "passwd", "erin", stdin="erin-password-1\nerin-password-1\n")
    assert changed.returncode == 0, changed.stderr
    page = web.get("/login")
    csrf = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    signed = web.post("/login", data={"username": "erin", "password": "erin-password-1", "csrf_token": csrf})
    assert signed.status_code == 303, signed.text[:500]
    assert "erin" in web.get("/spaces").text


def test_users_create_help_names_only_real_options(server: Server) -> None:
    help_text = spacehub(server, "users", "create", "--help").stdout
    assert "--ask-password" not in help_text
    assert "--password" in help_text and "users passwd" in help_text


def test_without_a_server_commands_act_on_their_data_dir(tmp_path: Path) -> None:
    env = {**os.environ, "SPACEHUB_DATA_DIR": str(tmp_path / "data"), "SPACEHUB_PORT": "1",
           "SPACEHUB_URL": "http://127.0.0.1:1"}
    result = subprocess.run([sys.executable, "-m", "spacehub", "users", "create", "frank"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
