"""Per-space activity: recorded by the proxy, read by the supervisor (sleep, freeze, drain after a redeploy).

The proxy calls `ActivityTracker.request_start` / `request_end` for every request to a space (its activity
hooks, `spacehub.proxy.activity`): plain dict updates, no I/O on the request path. A request counts from its start
to its end, so a long generation keeps its space awake even while nothing else happens; Gradio's heartbeat
stream does not count at all, so a forgotten browser tab does not keep a space awake forever.

Every `SPACEHUB_ACTIVITY_FLUSH_S` the tracker writes what changed to one Redis hash, one field per space:

    spacehub:activity  <space id> -> "<last active> <in flight> <last idle>"

`last active` is the time (epoch seconds) of the latest request start or end, or of the flush itself while
requests are in flight; `in flight` is the number of requests open at that moment; `last idle` is the latest
time the count fell to zero. The worker side reads it with `read_all` (one HGETALL per supervisor tick) and
marks a space active itself (`touch`) when it starts or thaws one, so that a fresh app is not frozen at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
import redis.asyncio as aioredis

from spacehub.proxy.activity import RequestCounter

log = logging.getLogger(__name__)

ACTIVITY_KEY = "spacehub:activity"


@dataclass(frozen=True)
class Activity:
    last_active: float  # epoch seconds
    in_flight: int
    last_idle: float  # epoch seconds when the in-flight count last fell to zero (0: never seen)

    def busy(self, now: float, flush_s: float) -> bool:
        """Requests are open. A record of open requests that is not refreshed (each flush rewrites it) comes
        from a proxy that has gone away: its requests are gone with it."""
        return self.in_flight > 0 and now - self.last_active <= 3 * flush_s + 1.0

    def idle_for(self, now: float, flush_s: float) -> float:
        return 0.0 if self.busy(now, flush_s) else max(0.0, now - self.last_active)

    def encode(self) -> str:
        return f"{self.last_active:.3f} {self.in_flight} {self.last_idle:.3f}"

    @classmethod
    def decode(cls, raw: bytes | str) -> Activity | None:
        text = raw.decode() if isinstance(raw, bytes) else raw
        try:
            last, in_flight, idle = text.split()
            return cls(float(last), int(in_flight), float(idle))
        except ValueError:
            return None


class ActivityTracker:
    """The proxy's side: counts requests per space in memory and publishes them periodically."""

    def __init__(self, redis_url: str, flush_s: float) -> None:
        self.redis_url = redis_url
        self.flush_s = flush_s
        # The counting itself runs compiled, inside the proxy package; this class publishes what it counts.
        self.counter = RequestCounter()
        self._task: asyncio.Task[None] | None = None
        self._redis: aioredis.Redis | None = None

    # The proxy's hooks (called with the request target: see spacehub.proxy.activity).

    @property
    def request_start(self) -> Callable[[int, bytes], None]:
        return self.counter.request_start

    @property
    def request_end(self) -> Callable[[int, bytes], None]:
        return self.counter.request_end

    # Publishing

    def snapshot(self, now: float) -> dict[str, str]:
        """The fields to write now: spaces that changed since the last flush, and every busy one (its
        `last active` moves on while requests are open)."""
        counter = self.counter
        changed = counter.take_dirty() | set(counter.busy())
        fields = {}
        for space_id in changed:
            count = counter.spaces[space_id]
            last = now if count.in_flight else (count.last_active or now)
            fields[str(space_id)] = Activity(last, count.in_flight, count.last_idle).encode()
        return fields

    async def start(self) -> None:
        self._redis = aioredis.Redis.from_url(self.redis_url)
        self._task = asyncio.create_task(self._flush_loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.flush()
        if self._redis is not None:
            await self._redis.aclose()

    async def flush(self) -> None:
        fields = self.snapshot(time.time())
        if fields and self._redis is not None:
            await self._redis.hset(ACTIVITY_KEY, mapping=fields)  # type: ignore[arg-type,misc]

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_s)
            try:
                await self.flush()
            except Exception:  # noqa: BLE001 - Redis away for a moment: the next flush carries it all
                log.exception("activity flush failed")


# The worker side


def read_all(conn: redis.Redis) -> dict[int, Activity]:
    result: dict[int, Activity] = {}
    raw: dict[bytes | str, bytes | str] = conn.hgetall(ACTIVITY_KEY)  # type: ignore[assignment]
    for key, value in raw.items():
        activity = Activity.decode(value)
        if activity is not None:
            result[int(key)] = activity
    return result


def read(conn: redis.Redis, space_id: int) -> Activity | None:
    raw = conn.hget(ACTIVITY_KEY, str(space_id))
    return Activity.decode(raw) if raw is not None else None  # type: ignore[arg-type]


def touch(conn: redis.Redis, space_id: int, now: float | None = None) -> None:
    """Mark a space active now (it was just started or thawed), keeping its other fields."""
    now = time.time() if now is None else now
    previous = read(conn, space_id)
    last_idle = previous.last_idle if previous is not None else 0.0
    conn.hset(ACTIVITY_KEY, str(space_id), Activity(now, 0, last_idle).encode())


def forget(conn: redis.Redis, space_id: int) -> None:
    conn.hdel(ACTIVITY_KEY, str(space_id))
