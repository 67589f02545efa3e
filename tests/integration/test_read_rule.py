"""One read rule, asked three ways, gives one answer: `access.can_read` (the API and the web UI), `list_visible`
(every list, the rule as a query) and the proxy's gate (a private space's host), for every kind of caller and
space. The expected answers are written out here, not derived from the code under test. Real database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from spacehub import access, accounts
from spacehub.edge.spacegate import SpaceGate
from spacehub.store.db import Database, migrate
from spacehub.store.models import Space
from support import pg

SPACES = {  # repo id -> private?
    "alice/open": False,
    "alice/diary": True,
    "Lab/notes": True,  # an org's, its name spelled with a capital as its owner typed it
    "lab/board": False,
}
# Who may read which private space; every caller reads the public ones.
READS_PRIVATE = {
    None: set(),
    "alice": {"alice/diary"},
    "bob": {"Lab/notes"},  # a member of Lab
    "carol": set(),  # nobody's member
    "dora": {"alice/diary", "Lab/notes"},  # an admin
}


@pytest.fixture
def db(tmp_path: Path) -> Database:
    url = pg.database_url(tmp_path / "rule.db")
    migrate(url)
    database = Database(url)
    with database.session() as session:
        for name in ("alice", "bob", "carol"):
            accounts.create_user(session, name)
        accounts.create_user(session, "dora", admin=True)
        accounts.create_org(session, "Lab", members=["bob"])
        for number, (repo_id, private) in enumerate(SPACES.items()):
            owner, name = repo_id.split("/")
            session.add(Space(owner=owner, name=name, key=access.space_key(owner, name), label=f"space-{number}",
                              repo_type="space", sdk="static", private=private))
    return database


def _tokens(db: Database) -> dict[str, str]:
    with db.session() as session:
        return {name: accounts.create_token(session, accounts.get_user(session, name), "t", role="read").secret
                for name in READS_PRIVATE if name is not None}


@pytest.mark.parametrize("caller", list(READS_PRIVATE))
def test_can_read_list_visible_and_the_gate_agree(db: Database, caller: str | None) -> None:
    expected = {repo_id for repo_id, private in SPACES.items() if not private} | READS_PRIVATE[caller]
    tokens = _tokens(db)
    gate = SpaceGate(db, cache_s=0)
    with db.session() as session:
        user = accounts.get_user(session, caller) if caller else None
        spaces = {space.repo_id: space for space in session.query(Space)}
        assert set(spaces) == set(SPACES)
        by_can_read = {repo_id for repo_id, space in spaces.items() if access.can_read(session, user, space)}
        listed = {space.repo_id for space in access.list_visible(session, user)}
        headers = [(b"authorization", f"Bearer {tokens[caller]}".encode())] if caller else []
        by_gate = {repo_id for repo_id, space in spaces.items()
                   if asyncio.run(gate.authorize_space_request(space, headers))}
    assert by_can_read == expected
    assert listed == expected
    assert by_gate == expected
