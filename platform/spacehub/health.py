"""What `/health` reports: each dependency checked for real (database, Redis, disk, workers), none assumed.

A check answers quickly even when its dependency is down (connect timeouts are settings), and says in words
what is wrong, so the 503 names it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass

import redis
from rq import Worker
from sqlalchemy import text

from spacehub.queue import BUILDS, OPS, queue
from spacehub.settings import Settings
from spacehub.store.db import Database


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def database(db: Database) -> Check:
    with db.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    return Check("database", True, db.engine.dialect.name)


def redis_server(conn: redis.Redis) -> Check:
    conn.ping()
    return Check("redis", True, "answers")


def disk(settings: Settings) -> Check:
    free_mb = shutil.disk_usage(settings.data_dir).free // (1024 * 1024)
    if free_mb < settings.min_free_disk_mb:
        return Check("disk", False, f"{free_mb} MB free under {settings.data_dir}, below "
                                    f"SPACEHUB_MIN_FREE_DISK_MB ({settings.min_free_disk_mb} MB)")
    return Check("disk", True, f"{free_mb} MB free under {settings.data_dir}")


def workers(conn: redis.Redis) -> Check:
    """At least one worker listens on each queue (builds, and the short ops jobs)."""
    missing = [name for name in (BUILDS, OPS) if not Worker.all(connection=conn, queue=queue(conn, name))]
    if missing:
        return Check("workers", False, "no worker listens on " + ", ".join(missing))
    return Check("workers", True, f"{Worker.count(connection=conn)} registered")


def run_checks(settings: Settings, db: Database, conn: Callable[[], redis.Redis]) -> list[Check]:
    """Every check, each on its own: one failing (even by raising) does not hide the others."""
    checks: list[Check] = []
    for name, check in (("database", lambda: database(db)), ("redis", lambda: redis_server(conn())),
                        ("disk", lambda: disk(settings)), ("workers", lambda: workers(conn()))):
        if name == "workers" and not all(c.ok for c in checks if c.name == "redis"):
            checks.append(Check(name, False, "unknown while Redis is down"))
            continue
        try:
            checks.append(check())
        except Exception as exc:  # noqa: BLE001 - a failing dependency is the answer, not an error
            checks.append(Check(name, False, f"{type(exc).__name__}: {exc}"))
    return checks
