"""Migration 0005_security on a database written before it: plaintext secrets are sealed in place (and open to
their old values), variables stay readable, oversized stored cards are emptied, tokens gain an expiry."""

from __future__ import annotations

import json
import sqlite3

import pytest
from alembic import command
from alembic.config import Config

from spacehub import crypto
from spacehub.settings import Settings
from spacehub.spaceconfig import MAX_CARD_BYTES
from spacehub.store.db import MIGRATIONS, Database, migrate
from spacehub.store.models import SpaceVariable, Token


def _at_0003(url: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    command.upgrade(cfg, "0003")


def _old_rows(path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("insert into users (id, name, name_key, fullname, email, is_admin, created_at) "
                     "values (1, 'ann', 'ann', '', '', 0, '2026-01-01')")
        for space_id, card in ((1, {"title": "ok"}), (2, {"lol": ["x" * 1000] * (MAX_CARD_BYTES // 1000 + 1)})):
            conn.execute("insert into spaces (id, owner, name, key, label, repo_type, private, hardware, stage, "
                         "message, card_data, restarts, created_at, updated_at) values (?, 'ann', ?, ?, ?, 'space',"
                         " 0, 'cpu-basic', 'RUNNING', '', ?, 0, '2026-01-01', '2026-01-01')",
                         (space_id, f"s{space_id}", f"ann/s{space_id}", f"ann-s{space_id}", json.dumps(card)))
        conn.execute("insert into space_variables (space_id, key, value, description, secret, updated_at) values "
                     "(1, 'API_KEY', 'plain-old-secret-123', '', 1, '2026-01-01'), "
                     "(1, 'MODE', 'visible', '', 0, '2026-01-01')")


def test_plaintext_secrets_are_sealed_by_the_migration(tmp_path):
    db_path = tmp_path / "old.db"
    url = f"sqlite:///{db_path}"
    _at_0003(url)
    _old_rows(db_path)
    settings = Settings(data_dir=tmp_path)
    migrate(url, secrets_key_file=crypto.key_file(settings))
    with sqlite3.connect(db_path) as conn:
        dump = "\n".join(conn.iterdump())
        cards = dict(conn.execute("select id, card_data from spaces").fetchall())
    assert "plain-old-secret-123" not in dump
    assert json.loads(cards[1]) == {"title": "ok"} and json.loads(cards[2]) == {}
    with Database(url).session() as session:
        rows = {row.key: row for row in session.query(SpaceVariable)}
        assert crypto.is_sealed(rows["API_KEY"].value)
        assert crypto.revealed(settings, list(rows.values())) == {"API_KEY": "plain-old-secret-123",
                                                                  "MODE": "visible"}
        assert session.query(Token).count() == 0  # the column exists: the query names expires_at


def test_plaintext_secrets_without_a_key_file_stop_the_migration(tmp_path):
    db_path = tmp_path / "old.db"
    url = f"sqlite:///{db_path}"
    _at_0003(url)
    _old_rows(db_path)
    with pytest.raises(RuntimeError, match="stored in plain text"):
        migrate(url)
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("select value from space_variables where key = 'API_KEY'").fetchone() == (
            "plain-old-secret-123",)
    migrate(url, secrets_key_file=tmp_path / "secrets.key")  # given the key file, the same database migrates
    with sqlite3.connect(db_path) as conn:
        (sealed,) = conn.execute("select value from space_variables where key = 'API_KEY'").fetchone()
    assert crypto.is_sealed(sealed)
