"""The platform's handles on its state, opened once at an entry point and passed down explicitly."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import redis

from spacehub import crypto, redisconn, routetable, transitions
from spacehub.accounts import ensure_admin
from spacehub.objectstore import LocalObjectStore, ObjectStore
from spacehub.repos import RepoStore
from spacehub.settings import Settings
from spacehub.store.db import Database, migrate


@dataclass
class Platform:
    settings: Settings
    db: Database
    repos: RepoStore

    @cached_property
    def objects(self) -> ObjectStore:
        """Where LFS objects live (the data dir; an S3-compatible store implements the same Protocol)."""
        return LocalObjectStore(self.settings.lfs_dir)

    @cached_property
    def redis(self) -> redis.Redis:
        return redisconn.connect(self.settings)

    @classmethod
    def open(cls, settings: Settings, *, migrate_schema: bool = True) -> Platform:
        for path in (settings.data_dir, settings.repos_dir, settings.run_dir, settings.logs_dir):
            path.mkdir(parents=True, exist_ok=True)
        url = settings.effective_database_url
        db = Database(url, pool_size=settings.database_pool_size, pool_timeout_s=settings.database_pool_timeout_s,
                      connect_timeout_s=settings.database_connect_timeout_s)
        db.check()  # a database that is down or misnamed is one line now, not a traceback later
        if migrate_schema:
            migrate(url, secrets_key_file=crypto.key_file(settings))
        if settings.admin_token is not None:
            with db.session() as session:
                ensure_admin(session, settings.admin_token.get_secret_value())
        platform = cls(settings=settings, db=db, repos=RepoStore(settings.repos_dir))
        transitions.configure(settings)
        # Every committed change of a space writes its route (and tells the proxy, waiting until every proxy
        # process applied it): spacehub.routetable.
        routetable.watch(db, lambda: platform.redis, settings.proxy_ack_timeout_s)
        return platform
