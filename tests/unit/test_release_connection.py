"""Git work under a repo's lock must not hold a database connection: a session with nothing of its own to write
ends its transaction first (the pool lends that connection out meanwhile); one with changes keeps them whole."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.pool import QueuePool

from spacehub import commits
from spacehub.store.db import Database, migrate
from spacehub.store.models import User


def _database(tmp_path: Path) -> Database:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrate(url)
    return Database(url)


def test_a_reading_session_gives_its_connection_back(tmp_path: Path) -> None:
    db = _database(tmp_path)
    pool = db.engine.pool
    assert isinstance(pool, QueuePool)
    with db.session() as session:
        session.scalars(select(User)).all()
        assert pool.checkedout() == 1
        commits.release_connection(session)
        assert pool.checkedout() == 0


def test_a_session_with_changes_keeps_its_transaction(tmp_path: Path) -> None:
    db = _database(tmp_path)
    pool = db.engine.pool
    try:
        with db.session() as session:
            session.add(User(name="kept", name_key="kept"))
            session.flush()
            commits.release_connection(session)
            assert pool.checkedout() == 1
            raise RuntimeError("the git work failed")
    except RuntimeError:
        pass
    with db.session() as session:
        assert session.scalars(select(User).where(User.name == "kept")).first() is None  # undone whole


def test_an_empty_pool_is_a_503_to_try_again(tmp_path: Path) -> None:
    """A request that waited its pool timeout for a connection gets 503 JSON with Retry-After, not a 500."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    from spacehub import httperrors as errors
    from spacehub.settings import Settings

    app = FastAPI()
    app.state.platform = type("P", (), {"settings": Settings(data_dir=tmp_path)})()
    errors.install(app)

    @app.get("/busy")
    def busy() -> None:
        raise PoolTimeout("QueuePool limit of size 5 overflow 10 reached, connection timed out, timeout 30.00")

    answer = TestClient(app, raise_server_exceptions=False).get("/busy")
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] and answer.headers["X-Error-Code"] == "ServiceUnavailable"
    assert "no database connection came free" in answer.json()["error"]
