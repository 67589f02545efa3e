"""The route table: host label -> upstream address, kept in Redis so the worker can publish and the proxy read."""

from __future__ import annotations

import redis

ROUTES_KEY = "spacehub:routes"
ROUTES_CHANNEL = "spacehub:routes:changed"


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
