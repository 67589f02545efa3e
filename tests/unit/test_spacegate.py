"""Who may reach a private space's host: tokens in the headers the proxy strips, checked against a real database
(SQLite, or PostgreSQL on `--db postgres`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest

from spacehub import accounts
from spacehub.edge.spacegate import MAX_CACHED, SpaceGate, presented_tokens
from spacehub.store.db import Database, migrate
from spacehub.store.models import Token
from support import pg


@dataclass(frozen=True)
class Entry:
    id: int
    owner: str
    private: bool


@pytest.fixture
def db(tmp_path: Path) -> Database:
    url = pg.database_url(tmp_path / "gate.db")
    migrate(url)
    return Database(url)


@pytest.fixture
def secrets(db: Database) -> dict[str, str]:
    with db.session() as session:
        alice = accounts.create_user(session, "alice")
        bob = accounts.create_user(session, "bob")
        carol = accounts.create_user(session, "carol")
        boss = accounts.create_user(session, "boss", admin=True)
        accounts.create_org(session, "Lab", ["carol"])
        return {user.name: accounts.create_token(session, user, "t").secret for user in (alice, bob, carol, boss)}


def _allowed(gate: SpaceGate, owner: str, headers: list[tuple[bytes, bytes]], private: bool = True) -> bool:
    return asyncio.run(gate.authorize_space_request(Entry(1, owner, private), headers))


def _bearer(secret: str, header: bytes = b"Authorization") -> list[tuple[bytes, bytes]]:
    return [(header, f"Bearer {secret}".encode())]


def test_owner_org_member_and_admin_may_read_others_may_not(db, secrets):
    gate = SpaceGate(db, cache_s=60)
    assert _allowed(gate, "alice", _bearer(secrets["alice"]))
    assert _allowed(gate, "ALICE", _bearer(secrets["alice"]))  # names are case-insensitive
    assert _allowed(gate, "lab", _bearer(secrets["carol"]))
    assert _allowed(gate, "alice", _bearer(secrets["boss"]))
    assert not _allowed(gate, "alice", _bearer(secrets["bob"]))
    assert not _allowed(gate, "lab", _bearer(secrets["alice"]))
    assert not _allowed(gate, "alice", [])
    assert not _allowed(gate, "alice", _bearer("sh_no_such_token_anywhere"))
    assert _allowed(gate, "alice", [], private=False)


def test_gradio_clients_header_counts_and_a_foreign_bearer_does_not(db, secrets):
    gate = SpaceGate(db, cache_s=60)
    assert _allowed(gate, "alice", _bearer(secrets["alice"], b"x-hf-authorization"))
    # An app's own Bearer scheme (not a platform token) is the app's business, never a key to the space.
    assert presented_tokens([(b"Authorization", b"Bearer eyJhbGciOi.app.jwt")]) == []
    assert presented_tokens([(b"Authorization", b"Basic dXNlcjpwYXNz")]) == []
    assert presented_tokens([(b"X-HF-Authorization", b"Bearer hf_abc")]) == ["hf_abc"]


def test_answers_are_cached_for_the_configured_time(db, secrets):
    cached = SpaceGate(db, cache_s=3600)
    fresh = SpaceGate(db, cache_s=0)
    assert _allowed(cached, "alice", _bearer(secrets["alice"]))
    assert _allowed(fresh, "alice", _bearer(secrets["alice"]))
    with db.session() as session:
        for token in session.query(Token).all():
            session.delete(token)
    assert _allowed(cached, "alice", _bearer(secrets["alice"]))  # remembered: no database on the hot path
    assert not _allowed(fresh, "alice", _bearer(secrets["alice"]))  # a revoked token stops at once here


def test_random_tokens_cannot_grow_the_cache_without_bound(db, secrets):
    gate = SpaceGate(db, cache_s=3600)

    async def flood() -> None:
        for number in range(MAX_CACHED + 10):
            await gate._tokens.get(number, lambda: None)

    asyncio.run(flood())
    assert len(gate._tokens._entries) <= MAX_CACHED


def test_user_ids_from_other_credentials_use_the_same_rules(db, secrets):
    gate = SpaceGate(db, cache_s=60)
    with db.session() as session:
        carol = accounts.get_user(session, "carol").id
    assert asyncio.run(gate.user_may_read(carol, "Lab"))
    assert not asyncio.run(gate.user_may_read(carol, "alice"))
    assert not asyncio.run(gate.user_may_read(10_000, "alice"))
