"""The route table (host label -> upstream address, in Redis so the worker writes and the proxy reads) and its one
writer: a space's route is derived from its SQL row by `wanted_target` and written by `sync`, nothing else.

`watch` makes every committed change of a space's stage, handle, frozen flag, label, visibility or message call
`sync` for that space, so no code path can change a space and forget its route. Each write publishes the label on
ROUTES_CHANNEL; the proxy then reloads that one label's route and row (`spacehub.gateway`). The supervisor calls
`sync_all` on every tick, which repairs whatever a lost publish or a crash between commit and write left behind.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import redis
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from spacehub.stages import SERVING, Stage
from spacehub.store.db import Database
from spacehub.store.models import Space

ROUTES_KEY = "spacehub:routes"
ROUTES_CHANNEL = "spacehub:routes:changed"

log = logging.getLogger("spacehub.routes")

# Columns of a space whose change the proxy must see at once (the route itself, or what it answers without one).
_WATCHED = ("stage", "handle", "frozen", "label", "private", "message")
_PENDING = "spacehub.routes.pending"  # session.info key: space id -> labels it had before the change


class RedisRouteTable:
    def __init__(self, conn: redis.Redis) -> None:
        self.conn = conn

    def set(self, host: str, target: str) -> None:
        self.conn.hset(ROUTES_KEY, host, target)
        self.conn.publish(ROUTES_CHANNEL, host)

    def delete(self, host: str) -> None:
        self.conn.hdel(ROUTES_KEY, host)
        self.conn.publish(ROUTES_CHANNEL, host)

    def get(self, host: str) -> str | None:
        value = self.conn.hget(ROUTES_KEY, host)
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    def all(self) -> dict[str, str]:
        raw = self.conn.hgetall(ROUTES_KEY)
        return {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()
        }


def wanted_target(stage: str | None, handle: dict[str, Any] | None, frozen: bool | None) -> str | None:
    """The upstream a space gets traffic at, or None: only a serving app that is not frozen (or being frozen)
    has a route; without one, a request asks for a wake or is told the stage."""
    if stage is None or Stage(stage) not in SERVING or not handle or frozen:
        return None
    target = handle.get("target")
    return str(target) if target else None


def sync(conn: redis.Redis, db: Database, space_id: int, old_labels: Iterable[str] = ()) -> None:
    """Write the space's route as its row says now (read afresh), and drop the labels it had before (a rename,
    a delete). Always publishes: the proxy reloads the label's row on it, even when the route stays."""
    with db.session() as session:
        row = session.execute(select(Space.label, Space.stage, Space.handle, Space.frozen)
                              .where(Space.id == space_id)).first()
    table = RedisRouteTable(conn)
    stale = set(old_labels)
    if row is not None:
        stale.discard(row.label)
        target = wanted_target(row.stage, row.handle, row.frozen)
        if target is not None:
            table.set(row.label, target)
        else:
            table.delete(row.label)
    for label in stale:
        table.delete(label)


def sync_all(conn: redis.Redis, db: Database) -> None:
    """Every space's route as SQL says (the reconciler's sweep). Only what differs is written, and each space that
    differs is read again first (`sync`): a change committed since the snapshot must not be undone."""
    with db.session() as session:
        rows = session.execute(select(Space.id, Space.label, Space.stage, Space.handle, Space.frozen)
                               .where(Space.repo_type == "space")).all()
    current = RedisRouteTable(conn).all()
    known = set()
    for row in rows:
        known.add(row.label)
        if current.get(row.label) != wanted_target(row.stage, row.handle, row.frozen):
            log.info("route of %s out of step with SQL: written again", row.label)
            sync(conn, db, row.id)
    for label in current.keys() - known:
        log.info("route of %s removed: no such space", label)
        RedisRouteTable(conn).delete(label)


def mark_changed(session: Session, space_id: int, *labels: str) -> None:
    """Have `sync` run for the space once `session` commits (for changes made by SQL statements, which the ORM
    events below do not see)."""
    session.info.setdefault(_PENDING, {}).setdefault(space_id, set()).update(labels)


def watch(db: Database, conn: Callable[[], redis.Redis]) -> None:
    """Call `sync` after every commit on `db`'s sessions that changed a space's watched columns."""

    def after_flush(session: Session, _context: object) -> None:
        for obj in list(session.new) + list(session.dirty) + list(session.deleted):
            if not isinstance(obj, Space) or obj.id is None:
                continue
            state = inspect(obj)
            if obj in session.deleted or obj in session.new:
                mark_changed(session, obj.id, obj.label)
                continue
            history = [state.attrs[name].history for name in _WATCHED]
            if any(h.has_changes() for h in history):
                label_history = state.attrs["label"].history
                mark_changed(session, obj.id, *[str(x) for x in label_history.deleted or () if x])

    def after_commit(session: Session) -> None:
        pending: dict[int, set[str]] = session.info.pop(_PENDING, {})
        for space_id, labels in pending.items():
            try:
                sync(conn(), db, space_id, labels)
            except Exception:  # noqa: BLE001 - Redis away: the supervisor's sweep (`sync_all`) repairs it later
                log.exception("route of space %s not written; the reconciler will", space_id)

    def after_rollback(session: Session) -> None:
        session.info.pop(_PENDING, None)

    db.listen("after_flush", after_flush)
    db.listen("after_commit", after_commit)
    db.listen("after_soft_rollback", lambda session, _previous: after_rollback(session))
