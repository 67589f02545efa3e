"""Draining the old revision after a redeploy: it finishes what it serves, then it is stopped.

`jobs.deploy` switches the route to the new revision once that one is ready, then `retire`s the old app: a
`RetiredApp` row, which the supervisor (`lifecycle`) stops once `is_drained` says every request it was serving
has ended, or once `SPACEHUB_DRAIN_TIMEOUT_S` has passed.

How "drained" is known without per-upstream counts: the proxy publishes, per space, the requests in flight and
the last moment that count fell to zero (`spacehub.edge.activity`). A route change reaches the proxy within
milliseconds (pub/sub), and what the proxy counts reaches Redis within a flush interval (`flush_s`); so every
request the old app got started before `retired + flush_s`, and is published by `retired + 2 * flush_s`. From
then on, a published count of zero, or a fall to zero after `retired + flush_s`, means none of them is left.
It is conservative: under steady overlapping traffic the count may never reach zero, and the timeout ends it.

A Gradio client that began on the old revision stays pinned to it while it drains (spacehub.edge.gateway), so requests
keep reaching the old app after the switch. Draining therefore has two steps: once drained (or timed out), the
app is `unpin`ned (every proxy sends its clients to the new revision, acknowledged), and it is stopped once drained
again, counted from that moment (or at the drain timeout after it).
"""

from __future__ import annotations

from datetime import datetime

import redis
from sqlalchemy.orm import Session

from spacehub import routetable
from spacehub.context import Platform
from spacehub.edge.activity import Activity
from spacehub.routetable import UNPINNED_KEY
from spacehub.store.models import RetiredApp
from spacehub_runner.plugs import Handle


def retire(platform: Platform, space_id: int, handle: Handle) -> None:
    with platform.db.session() as session:
        retire_in(session, space_id, handle)


def retire_in(session: Session, space_id: int, handle: Handle) -> None:
    """Retire the app within `session`'s transaction (the deploy's route switch: both commit together)."""
    session.add(RetiredApp(space_id=space_id, handle=handle.to_json()))


def unpinned(conn: redis.Redis) -> dict[int, float]:
    """Retired app row id -> when its pinned clients were sent away (`unpin`)."""
    raw = conn.hgetall(UNPINNED_KEY)
    return {int(k): float(v) for k, v in raw.items()}  # type: ignore[union-attr]


def unpin(platform: Platform, row_id: int, space_id: int, now: float) -> None:
    """Send the clients pinned to a retired app to the space's serving revision, on every proxy (the call returns
    once each has applied it); the app is stopped once drained again from `now`."""
    platform.redis.hset(UNPINNED_KEY, str(row_id), repr(now))
    routetable.sync(platform.redis, platform.db, space_id, ack_timeout_s=platform.settings.proxy_ack_timeout_s)


def forget_unpin(conn: redis.Redis, row_id: int) -> None:
    conn.hdel(UNPINNED_KEY, str(row_id))


def is_drained(activity: Activity | None, retired_at: float, now: float, flush_s: float) -> bool:
    """True when no request the old app was serving is left (times in epoch seconds)."""
    if now < retired_at + 2 * flush_s:
        return False
    if activity is None or not activity.busy(now, flush_s):
        return True
    return activity.last_idle >= retired_at + flush_s


def epoch(when: datetime) -> float:
    """A naive UTC datetime from SQL as epoch seconds."""
    return (when - datetime(1970, 1, 1)).total_seconds()
