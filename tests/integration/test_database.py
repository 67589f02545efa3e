"""The platform on the database the run chose (SQLite, or PostgreSQL on `--db postgres`): the schema migrates to
the newest revision, the pool is sized by its setting, and `spacehub serve` keeps its state there."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, select

from spacehub import accounts
from spacehub.context import Platform
from spacehub.settings import Settings
from spacehub.store.db import MIGRATIONS
from spacehub.store.models import Space, User
from support import pg
from support.server import Server

DIALECTS = {"sqlite": "sqlite", "postgres": "postgresql"}


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    settings = Settings(data_dir=tmp_path, database_url=pg.database_url(tmp_path / "spacehub.db"),
                        database_pool_size=3)  # type: ignore[call-arg]
    opened = Platform.open(settings)
    yield opened
    opened.db.engine.dispose()


def test_the_schema_is_at_the_newest_migration(platform: Platform, database_backend: str) -> None:
    assert platform.db.engine.dialect.name == DIALECTS[database_backend]
    with platform.db.engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    assert current is not None
    assert current == ScriptDirectory(str(MIGRATIONS)).get_current_head()


def test_the_pool_is_sized_by_the_setting(platform: Platform, database_backend: str) -> None:
    if database_backend == "sqlite":
        pytest.skip("SQLite opens a file per connection: no server pool to size (the postgres pass checks it)")
    pool = platform.db.engine.pool
    assert pool.size() == 3  # type: ignore[attr-defined]
    # All 3 + 3 overflow connections can be held at once; a 7th would wait (not asserted: that is a timing).
    sessions = [platform.db.engine.connect() for _ in range(6)]
    try:
        assert pool.checkedout() == 6  # type: ignore[attr-defined]
    finally:
        for conn in sessions:
            conn.close()


def test_accounts_round_trip(platform: Platform) -> None:
    with platform.db.session() as session:
        alice = accounts.create_user(session, "alice", password="correct horse battery")
        token = accounts.create_token(session, alice, "laptop")
    with platform.db.session() as session:
        user, _ = accounts.authenticate_token(session, token.secret)
        assert user.name == "alice"
        assert accounts.check_password(session, "alice", "correct horse battery").name == "alice"


def test_serve_keeps_its_state_in_the_chosen_database(tmp_path: Path, database_backend: str) -> None:
    server = Server(tmp_path / "data")
    server.start()
    try:
        created = server.api.post("/api/repos/create", json={"type": "space", "name": "dbcheck", "sdk": "static"})
        assert created.status_code == 200, created.text
    finally:
        server.stop()
    url = server.env["SPACEHUB_DATABASE_URL"]
    assert url.startswith({"sqlite": "sqlite:", "postgres": "postgresql+psycopg:"}[database_backend])
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(select(Space.key).where(Space.name == "dbcheck")).scalar_one() == "admin/dbcheck"
            assert conn.execute(select(User.is_admin).where(User.name == "admin")).scalar_one() is True
    finally:
        engine.dispose()
