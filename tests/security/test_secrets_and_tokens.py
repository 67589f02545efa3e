"""Secrets are sealed at rest (a database dump shows none) and opened only into the app's environment; the key
rotates; tokens expire. A real `spacehub serve`, a real app process, the real CLI."""

from __future__ import annotations

import base64
import re
import sqlite3
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from support import pg
from support.server import Server, app_pids
from support.websession import HTML, sign_in

pytestmark = pytest.mark.timeout(600)

SECRET = "s3cr3t-value-7d1f0a9c2b"  # unique: a match anywhere in the database files is a leak
STATIC_README = b"---\ntitle: Secretive\nsdk: static\n---\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("secrets") / "data")
    srv.start()
    yield srv
    srv.stop()
    srv.kill_apps()


def database_dump(server: Server) -> str:
    """What a database dump shows: `sqlite3 spacehub.db .dump` (the same iterdump) plus the raw bytes of every
    database file, or `pg_dump` on a PostgreSQL run."""
    url = server.env["SPACEHUB_DATABASE_URL"]
    if url.startswith("sqlite"):
        with sqlite3.connect(server.data_dir / "spacehub.db") as conn:
            dump = "\n".join(conn.iterdump())
        raw = b"".join(path.read_bytes() for path in server.data_dir.glob("spacehub.db*"))
        return dump + raw.decode("latin-1")
    uri = re.sub(r"^postgresql\+\w+://", "postgresql://", url)
    return subprocess.run([str(pg.pg_bin() / "pg_dump"), uri], capture_output=True, text=True, check=True).stdout


def sql(server: Server, statement: str, **params: Any) -> list[Any]:
    engine = sa.create_engine(server.env["SPACEHUB_DATABASE_URL"])
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(statement), params)
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


def app_environment(server: Server, previous: set[int] = frozenset()) -> tuple[int, dict[str, str]]:  # type: ignore[assignment]
    """The environment of the space's (only) app process, waiting for one not in `previous`."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for pid in set(app_pids(server.data_dir)) - set(previous):
            try:
                raw = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue
            env = dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)
            if env.get("SPACE_ID") == "admin/secretive":
                return pid, env
        time.sleep(0.3)
    raise AssertionError(f"no app process for admin/secretive:\n{server.log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def secretive(server):
    created = server.api.post("/api/repos/create", json={"type": "space", "name": "secretive", "sdk": "static"})
    assert created.status_code == 200, created.text
    added = server.api.post("/api/spaces/admin/secretive/secrets",
                            json={"key": "API_KEY", "value": SECRET, "description": "for the test"})
    assert added.status_code == 200, added.text
    files = [("files", ("README.md", STATIC_README)), ("files", ("index.html", b"<h1>hi</h1>"))]
    assert server.api.post("/api/spaces/admin/secretive/upload", files=files).status_code == 200
    server.wait_stage("admin/secretive", {"RUNNING"})
    return "admin/secretive"


def test_a_database_dump_shows_no_secret_value(server, secretive):
    dump = database_dump(server)
    assert SECRET not in dump
    assert base64.b64encode(SECRET.encode()).decode() not in dump
    assert "API_KEY" in dump  # the row is there, sealed: its name is not a secret
    key_file = server.data_dir / "secrets.key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert SECRET not in server.api.get("/api/spaces/admin/secretive/secrets").text


def test_the_app_gets_the_opened_value_at_run_time(server, secretive):
    _pid, env = app_environment(server)
    assert env["API_KEY"] == SECRET
    assert not any(key.startswith("SPACEHUB_") for key in env)


def test_rotating_the_key_reseals_and_the_app_still_gets_the_value(server, secretive):
    old_ids = {line.split()[0] for line in (server.data_dir / "secrets.key").read_text().splitlines()}
    before = database_dump(server)
    result = server.cli("secrets", "rotate-key")
    assert "Re-sealed 1 secret(s)" in result.stdout
    lines = (server.data_dir / "secrets.key").read_text().splitlines()
    assert len(lines) == 1 and lines[0].split()[0] not in old_ids
    after = database_dump(server)
    assert SECRET not in after
    [(sealed,)] = sql(server, "select value from space_variables where key = 'API_KEY'")
    assert sealed.startswith(f"enc1:{lines[0].split()[0]}:") and sealed not in before
    old_pid, _env = app_environment(server)
    assert server.api.post("/api/spaces/admin/secretive/restart").status_code == 200
    _pid, env = app_environment(server, previous={old_pid})
    assert env["API_KEY"] == SECRET


def test_a_secret_copied_onto_another_row_does_not_open(server, secretive):
    """Sealed values are bound to their space and name: moving one in the database reveals nothing."""
    assert server.api.post("/api/repos/create", json={"type": "space", "name": "thief", "sdk": "static"}).is_success
    assert server.api.post("/api/spaces/admin/thief/secrets", json={"key": "API_KEY", "value": "x"}).is_success
    [(sealed,)] = sql(server, "select v.value from space_variables v join spaces s on s.id = v.space_id "
                              "where s.name = 'secretive'")
    sql(server, "update space_variables set value = :sealed where space_id = (select id from spaces where "
                "name = 'thief')", sealed=sealed)
    files = [("files", ("README.md", STATIC_README)), ("files", ("index.html", b"<h1>mine</h1>"))]
    assert server.api.post("/api/spaces/admin/thief/upload", files=files).status_code == 200
    runtime = server.wait_stage("admin/thief", {"RUNNING", "RUNTIME_ERROR", "BUILD_ERROR"})
    assert runtime["stage"] != "RUNNING"
    assert "altered" in server.log.read_text() or "altered" in str(runtime.get("errorMessage"))


# Tokens -----------------------------------------------------------------------------------------------------


def _expire(server: Server, token_id: int) -> None:
    """Time passing, without waiting for it: the token's expiry moves into the past."""
    past = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=1)
    sql(server, "update tokens set expires_at = :past where id = :id", past=past, id=token_id)


def test_an_expired_token_gets_401_everywhere(server):
    made = server.api.post("/api/tokens", json={"name": "short-lived", "expires": "1h"})
    assert made.status_code == 200, made.text
    token, token_id = made.json()["token"], made.json()["id"]
    auth = {"Authorization": f"Bearer {token}"}
    assert server.api.get("/api/whoami-v2", headers=auth).status_code == 200
    _expire(server, token_id)
    whoami = server.api.get("/api/whoami-v2", headers=auth)
    assert whoami.status_code == 401
    assert whoami.headers["x-error-code"] == "TokenExpired"
    assert "expired" in whoami.json()["error"]
    created = server.api.post("/api/repos/create", json={"type": "space", "name": "late", "sdk": "static"},
                              headers=auth)
    assert created.status_code == 401
    assert server.api.get("/api/spaces/admin/late").status_code == 404
    basic = base64.b64encode(f"admin:{token}".encode()).decode()
    git = server.api.get("/spaces/admin/secretive.git/info/refs", params={"service": "git-upload-pack"},
                         headers={"Authorization": f"Basic {basic}"})
    assert git.status_code == 401
    listed = {row["id"]: row for row in server.api.get("/api/tokens").json()}
    assert listed[token_id]["expired"] is True


def test_cli_tokens_expire_when_asked(server):
    secret = server.cli("token", "create", "--name", "thirty", "--expires", "30d").stdout.strip()
    rows = [row for row in server.api.get("/api/tokens").json() if row["name"] == "thirty"]
    assert len(rows) == 1 and rows[0]["expiresAt"] is not None and rows[0]["expired"] is False
    days = (time.mktime(time.strptime(rows[0]["expiresAt"][:19], "%Y-%m-%dT%H:%M:%S")) - time.mktime(
        time.gmtime())) / 86400
    assert 29.9 < days < 30.1
    assert server.api.get("/api/whoami-v2", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    refused = server.cli("token", "create", "--expires", "soon", check=False)
    assert refused.returncode != 0 and "30d" in refused.stderr
    no_expiry = server.cli("token", "create", "--name", "forever").stdout.strip()
    assert no_expiry.startswith("sh_")
    assert [row["expiresAt"] for row in server.api.get("/api/tokens").json() if row["name"] == "forever"] == [None]


def test_a_token_cannot_mint_a_longer_lived_one(server):
    made = server.api.post("/api/tokens", json={"name": "parent", "expires": "1h"}).json()
    auth = {"Authorization": f"Bearer {made['token']}"}
    assert server.api.post("/api/tokens", json={"name": "child"}, headers=auth).status_code == 403
    assert server.api.post("/api/tokens", json={"name": "child", "expires": "2h"}, headers=auth).status_code == 403
    assert server.api.post("/api/tokens", json={"name": "child", "expires": "30m"}, headers=auth).status_code == 200


def test_environment_has_no_key_material(server, secretive):
    _pid, env = app_environment(server)
    key_text = (server.data_dir / "secrets.key").read_text()
    assert not any(value and value in key_text for value in env.values() if len(value) > 8)


def test_the_tokens_page_creates_expiring_tokens(server):
    server.cli("users", "create", "dora", "--password", "dora-password-1")
    client, csrf = sign_in(server, "dora", "dora-password-1")
    made = client.post("/settings/tokens", headers=HTML,
                       data={"name": "page-token", "role": "read", "expires": "7d", "csrf_token": csrf})
    assert made.status_code == 200, made.text[:500]
    secret = re.search(r'<code id="new-token">(sh_[^<]+)</code>', made.text)
    assert secret is not None
    row = re.search(r'data-token="page-token">.*?<td data-expires>([^<]+)</td>', made.text, re.DOTALL)
    assert row is not None and row.group(1).endswith(" UTC")
    bad = client.post("/settings/tokens", headers=HTML,
                      data={"name": "bad", "role": "read", "expires": "forever", "csrf_token": csrf})
    assert bad.status_code == 400 and "30d" in bad.text
