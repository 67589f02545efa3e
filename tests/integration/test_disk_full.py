"""A full disk is a clear 507 JSON naming the data dir on writes (never a bare 500), and /health says so."""

from __future__ import annotations

import errno
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event

from spacehub import httperrors
from spacehub.app import create_app
from spacehub.context import Platform
from spacehub.settings import Settings

TOKEN = "sh_disk_full_test_token_0123456789"


def test_enospc_from_a_real_write_is_507_json_naming_the_data_dir(tmp_path):
    app = FastAPI()
    app.state.platform = SimpleNamespace(settings=Settings(data_dir=tmp_path))
    httperrors.install(app)

    @app.post("/write")
    def write() -> None:
        with open("/dev/full", "wb") as full:  # every write here fails with ENOSPC, as on a full disk
            full.write(b"x" * 65536)
            full.flush()

    with pytest.raises(OSError) as raised:
        write()
    assert raised.value.errno == errno.ENOSPC
    response = TestClient(app, raise_server_exceptions=False).post("/write")
    assert response.status_code == 507
    assert response.headers["X-Error-Code"] == "InsufficientStorage"
    assert str(tmp_path) in response.json()["error"]


@pytest.fixture
def platform(tmp_path, redis_server):  # a real Redis: requests may count in it (rate limits)
    settings = Settings(data_dir=tmp_path / "data", admin_token=TOKEN, redis_url=redis_server.url)
    yield Platform.open(settings)


def test_sqlite_full_is_507_json_on_a_write(platform):
    client = TestClient(create_app(platform), raise_server_exceptions=False,
                        headers={"Authorization": f"Bearer {TOKEN}"})
    assert client.get("/api/whoami-v2").status_code == 200

    # SQLite's own "database or disk is full" (SQLITE_FULL): the file may not grow by a page.
    @event.listens_for(platform.db.engine, "connect")
    def cap(conn, _record):  # type: ignore[no-untyped-def]
        cursor = conn.cursor()
        pages = cursor.execute("PRAGMA page_count").fetchone()[0]
        cursor.execute(f"PRAGMA max_page_count = {pages}")
        cursor.close()

    platform.db.engine.dispose()  # new connections, each capped
    names = [f"filler-{i}" for i in range(400)]
    statuses = []
    for name in names:  # each row takes room: soon no page is left
        response = client.post("/api/repos/create", json={"type": "model", "name": name})
        statuses.append(response.status_code)
        if response.status_code != 200:
            break
    assert statuses[-1] == 507, statuses
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["X-Error-Code"] == "InsufficientStorage"
    assert str(platform.settings.data_dir) in response.json()["error"]
    assert 500 not in statuses


def test_health_names_a_disk_below_the_free_space_floor(platform):
    low = platform.settings.model_copy(update={"min_free_disk_mb": 1 << 40})
    app = create_app(Platform(settings=low, db=platform.db, repos=platform.repos))
    response = TestClient(app, raise_server_exceptions=False).get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["disk"]["ok"] is False
    assert str(low.data_dir) in body["checks"]["disk"]["detail"]
    assert "disk:" in body["error"] and "SPACEHUB_MIN_FREE_DISK_MB" in body["error"]
    assert int(response.headers["Retry-After"]) > 0
    assert body["checks"]["database"]["ok"] is True
