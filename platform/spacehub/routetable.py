"""The route table (host label -> upstream address, in Redis so the worker writes and the proxy reads) and its one
writer: a space's route is derived from its SQL row by `wanted_target` and written by `sync`, nothing else.

`watch` makes every committed change of a space's stage, handle, frozen flag, label, visibility or message call
`sync` for that space, so no code path can change a space and forget its route. Each write publishes the label on
ROUTES_CHANNEL; the proxy then reloads that one label's route and row (`spacehub.edge.gateway`). The supervisor calls
`sync_all` on every tick, which repairs whatever a lost publish or a crash between commit and write left behind.

A change that takes access away (a space made private or deleted, a token revoked, a user or membership removed)
must hold at every proxy process by the time the call that made it returns. So `watch` publishes with an
acknowledgement: the message carries a nonce, each proxy process pushes that nonce's key once it has applied the
change, and the committing thread waits (up to SPACEHUB_PROXY_ACK_TIMEOUT_S) for as many pushes as PUBLISH said
there were listeners. Access changes publish GATE_MESSAGE, on which proxies forget the token and user answers
they had cached (`spacehub.edge.spacegate`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import redis
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session, SessionTransaction

from spacehub.stages import SERVING, Stage
from spacehub.store.db import Database
from spacehub.store.models import Membership, RetiredApp, Space, Token, User

ROUTES_KEY = "spacehub:routes"
ROUTES_CHANNEL = "spacehub:routes:changed"
# A message on ROUTES_CHANNEL is `<label>` or `<label> <nonce>`; GATE_MESSAGE (not a label: labels are DNS labels)
# stands for "who may read what changed". With a nonce, each listener pushes ACK_PREFIX + nonce once applied.
GATE_MESSAGE = "!gate"
ACK_PREFIX = "spacehub:routes:ack:"
# Retired app row id -> when its pinned clients were sent to the serving revision (spacehub_runner.drain): the
# proxy pins nobody to those any more.
UNPINNED_KEY = "spacehub:drain:unpinned"
ACK_KEY_TTL_S = 60  # an acknowledgement nobody waits for any more expires
_ACK_POLL_S = 0.5

log = logging.getLogger("spacehub.routetable")

# Columns of a space whose change the proxy must see at once (the route itself, or what it answers without one).
_WATCHED = ("stage", "handle", "frozen", "label", "private", "message")
_PENDING = "spacehub.routetable.pending"  # session.info key: space id -> labels it had before the change
_GATE_PENDING = "spacehub.routetable.gate_pending"  # session.info key: set when an access change is in the flush
_COMMITTED = "spacehub.routetable.committed"  # session.info key: what a commit changed, told once its transaction ends


def parse_message(text: str) -> tuple[str, str | None]:
    """(label or GATE_MESSAGE, nonce to acknowledge or None) of a ROUTES_CHANNEL message."""
    subject, _, nonce = text.partition(" ")
    return subject, nonce or None


def ack_key(nonce: str) -> str:
    return ACK_PREFIX + nonce


def publish_acked(conn: redis.Redis, subject: str, timeout_s: float) -> bool:
    """Publish `subject` and wait until every process listening then has applied it (at most `timeout_s`).

    True when all acknowledged. On a thread running an event loop (an async endpoint of the API) waiting would
    block every request of that loop, so the message goes out without the wait; so it does when `timeout_s` is
    0."""
    if timeout_s <= 0 or _on_event_loop():
        conn.publish(ROUTES_CHANNEL, subject)
        return False
    nonce = uuid.uuid4().hex
    listeners = int(conn.publish(ROUTES_CHANNEL, f"{subject} {nonce}"))  # type: ignore[arg-type]
    deadline = time.monotonic() + timeout_s
    key = ack_key(nonce)
    acked = 0
    try:
        while acked < listeners:
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("%d of %d proxy processes did not confirm the change of %s within %gs",
                            listeners - acked, listeners, subject, timeout_s)
                return False
            # In short slices: a connection's read timeout (redis-py applies the connect timeout to a unix
            # socket's reads) must not cut a longer block.
            if conn.blpop([key], timeout=min(max(left, 0.01), _ACK_POLL_S)) is not None:
                acked += 1
    finally:
        conn.delete(key)
    return True


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class RedisRouteTable:
    def __init__(self, conn: redis.Redis, ack_timeout_s: float = 0.0) -> None:
        self.conn = conn
        # > 0: each write returns once every proxy process applied it (see `publish_acked`).
        self.ack_timeout_s = ack_timeout_s

    def set(self, host: str, target: str) -> None:
        self.conn.hset(ROUTES_KEY, host, target)
        publish_acked(self.conn, host, self.ack_timeout_s)

    def delete(self, host: str) -> None:
        self.conn.hdel(ROUTES_KEY, host)
        publish_acked(self.conn, host, self.ack_timeout_s)

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


def sync(conn: redis.Redis, db: Database, space_id: int, old_labels: Iterable[str] = (),
         ack_timeout_s: float = 0.0) -> None:
    """Write the space's route as its row says now (read afresh), and drop the labels it had before (a rename,
    a delete). Always publishes: the proxy reloads the label's row on it, even when the route stays. With
    `ack_timeout_s`, returns once every proxy process has (or that time passed)."""
    with db.session() as session:
        row = session.execute(select(Space.label, Space.stage, Space.handle, Space.frozen)
                              .where(Space.id == space_id)).first()
    table = RedisRouteTable(conn, ack_timeout_s)
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


def _changes_access(session: Session, obj: object) -> bool:
    """Does this flushed object change who may read a private space (what the proxy's gate caches)? A new user
    or token does not: nobody can have presented it yet."""
    if isinstance(obj, Membership):
        return obj in session.new or obj in session.deleted or inspect(obj).attrs["org_id"].history.has_changes()
    if obj in session.new:
        return False
    if isinstance(obj, Token):  # a token's use stamps last_used_at: not an access change
        return obj in session.deleted or inspect(obj).attrs["expires_at"].history.has_changes()
    if isinstance(obj, User):
        return obj in session.deleted or any(inspect(obj).attrs[name].history.has_changes()
                                             for name in ("is_admin", "name_key"))
    return False


def watch(db: Database, conn: Callable[[], redis.Redis], ack_timeout_s: float = 0.0) -> None:
    """Call `sync` after every commit on `db`'s sessions that changed a space's watched columns, and tell the
    proxies' gates after one that changed who may read what. With `ack_timeout_s`, the commit returns once every
    proxy process has applied the change (or that time passed)."""

    def after_flush(session: Session, _context: object) -> None:
        for obj in list(session.new) + list(session.dirty) + list(session.deleted):
            if _changes_access(session, obj):
                session.info[_GATE_PENDING] = True
            if isinstance(obj, RetiredApp) and obj.space_id is not None and obj not in session.dirty:
                mark_changed(session, obj.space_id)  # the proxy keeps clients pinned to a draining revision
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
        # Not told yet: the session still holds its database connection here (SQLAlchemy closes the transaction
        # after this hook), and telling opens another and may wait for the proxies' acknowledgements. A thread
        # holding one connection while it waits for a second drains the pool under load: tell once it is closed.
        session.info[_COMMITTED] = (session.info.pop(_PENDING, {}), session.info.pop(_GATE_PENDING, False))

    def after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
        if transaction.parent is not None or _COMMITTED not in session.info:
            return
        pending, gate = session.info.pop(_COMMITTED)
        for space_id, labels in pending.items():
            try:
                sync(conn(), db, space_id, labels, ack_timeout_s)
            except Exception:  # noqa: BLE001 - Redis away: the supervisor's sweep (`sync_all`) repairs it later
                log.exception("route of space %s not written; the reconciler will", space_id)
        if gate:
            try:
                publish_acked(conn(), GATE_MESSAGE, ack_timeout_s)
            except Exception:  # noqa: BLE001 - Redis away: the proxies' caches expire by SPACEHUB_TOKEN_CACHE_S
                log.exception("proxies not told of an access change; their caches expire on their own")

    def after_rollback(session: Session) -> None:
        session.info.pop(_PENDING, None)
        session.info.pop(_GATE_PENDING, None)

    db.listen("after_flush", after_flush)
    db.listen("after_commit", after_commit)
    db.listen("after_transaction_end", after_transaction_end)
    db.listen("after_soft_rollback", lambda session, _previous: after_rollback(session))
