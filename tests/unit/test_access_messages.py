"""Which committed changes tell the proxies' gates to forget what they cached (`spacehub.routetable.watch`), and what
the gate does on that message: a real database (SQLite, or PostgreSQL on `--db postgres`); the Redis connection is
a recorder, since only what would be published is under test here (tests/integration/test_access_changes.py runs
the whole path across processes)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select

from spacehub import accounts, routetable
from spacehub.edge.spacegate import SpaceGate
from spacehub.store.db import Database, migrate
from spacehub.store.models import Membership, Token
from support import pg


class Recorder:
    def __init__(self) -> None:
        self.published: list[str] = []

    def publish(self, channel: str, message: str) -> int:
        assert channel == routetable.ROUTES_CHANNEL
        self.published.append(message)
        return 0


@pytest.fixture
def db(tmp_path: Path) -> Database:
    url = pg.database_url(tmp_path / "access.db")
    migrate(url)
    return Database(url)


@pytest.fixture
def recorder(db: Database) -> Recorder:
    conn = Recorder()
    routetable.watch(db, lambda: conn)  # type: ignore[arg-type,return-value]
    return conn


def test_revoking_a_token_tells_the_gates_and_using_one_does_not(db, recorder):
    with db.session() as session:
        alice = accounts.create_user(session, "alice")
        secret = accounts.create_token(session, alice, "t").secret
    assert routetable.GATE_MESSAGE not in recorder.published  # a new user or token: nobody can have presented it

    with db.session() as session:
        accounts.authenticate_token(session, secret)  # stamps last_used_at
    assert routetable.GATE_MESSAGE not in recorder.published

    with db.session() as session:
        user, token = accounts.authenticate_token(session, secret)
        accounts.revoke_token(session, user, token.id)
    assert recorder.published == [routetable.GATE_MESSAGE]


def test_membership_changes_and_user_removal_tell_the_gates(db, recorder):
    with db.session() as session:
        accounts.create_user(session, "carol")
        accounts.create_org(session, "Lab", ["carol"])
    assert recorder.published == [routetable.GATE_MESSAGE]  # carol gained a namespace

    with db.session() as session:
        session.delete(session.scalars(select(Membership)).one())
    assert recorder.published == [routetable.GATE_MESSAGE] * 2

    with db.session() as session:
        session.delete(accounts.find_user(session, "carol"))
    assert recorder.published == [routetable.GATE_MESSAGE] * 3


def test_forget_drops_cached_answers_and_keeps_none_looked_up_across_it(db):
    with db.session() as session:
        alice = accounts.create_user(session, "alice")
        secret = accounts.create_token(session, alice, "t").secret
    gate = SpaceGate(db, cache_s=3600)

    async def scenario() -> None:
        assert await gate.token_caller(secret) is not None
        with db.session() as session:
            session.query(Token).delete()
        assert await gate.token_caller(secret) is not None  # cached: the revocation message has not come
        gate.forget()
        assert await gate.token_caller(secret) is None

    asyncio.run(scenario())

    # A lookup that read the database before a change, and ends after its message, is not remembered.
    with db.session() as session:
        secret = accounts.create_token(session, accounts.find_user(session, "alice"), "u").secret
    slow = SpaceGate(db, cache_s=3600)
    original = slow._lookup_token

    def lookup_then_revoke(value: str) -> object:
        answer = original(value)
        with db.session() as session:
            session.query(Token).delete()
        slow.forget()  # the revocation's message arrives while this lookup is on its way back
        return answer

    slow._lookup_token = lookup_then_revoke  # type: ignore[method-assign,assignment]

    async def racing() -> None:
        assert await slow.token_caller(secret) is not None  # this request was already on its way
        slow._lookup_token = original  # type: ignore[method-assign]
        assert await slow.token_caller(secret) is None

    asyncio.run(racing())


def test_the_proxies_are_told_after_the_committing_session_gave_its_connection_back(db, tmp_path):
    """Telling may wait seconds for the proxies' acknowledgements and reads the route with a session of its own: a
    committing thread that still held its connection meanwhile would hold two, and under load drain the pool."""
    held: list[int] = []

    class Counting(Recorder):
        def publish(self, channel: str, message: str) -> int:
            held.append(db.engine.pool.checkedout())
            return super().publish(channel, message)

    conn = Counting()
    routetable.watch(db, lambda: conn)  # type: ignore[arg-type,return-value]
    with db.session() as session:
        alice = accounts.create_user(session, "alice")
        token = accounts.create_token(session, alice, "t").token
    with db.session() as session:
        accounts.revoke_token(session, session.merge(alice), token.id)
    assert conn.published == [routetable.GATE_MESSAGE]
    assert held == [0]
