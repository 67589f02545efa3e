"""The state machine and the route writer against a real database and a real redis-server.

- `transition` consults the table, records who and why, raises on an illegal move when strict, logs otherwise;
- a committed change of a space's stage, handle, frozen flag or label writes its route (derived from the row) and
  publishes the label; a rolled-back one writes nothing;
- the proxy's resolver reloads the one label a message names, not the table.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from spacehub import routetable, transitions
from spacehub.context import Platform
from spacehub.edge.gateway import SpaceResolver
from spacehub.redisconn import EmbeddedRedis, redis_url
from spacehub.settings import Settings
from spacehub.stages import Stage
from spacehub.store.models import Space
from spacehub.transitions import IllegalTransition, transition, transition_if

HANDLE = {"runtime": "process", "target": "127.0.0.1:7999", "data": {}}


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    # (No periodic full reload of the proxy's tables during a test: only messages may change them.)
    # (The tests' own listener on the route channel does not acknowledge: writes do not wait for it.)
    settings = Settings(data_dir=tmp_path, strict_transitions=True, route_refresh_s=3600, proxy_ack_timeout_s=0)
    server = EmbeddedRedis(settings)
    server.start()
    platform = Platform.open(settings)
    try:
        yield platform
    finally:
        transitions.configure(Settings(data_dir=tmp_path))  # (process-wide: leave it as other tests expect)
        platform.db.engine.dispose()
        server.stop()


def _space(platform: Platform, name: str = "demo") -> int:
    with platform.db.session() as session:
        space = Space(owner="alice", name=name, key=f"alice/{name}", label=f"alice-{name}")
        session.add(space)
        session.flush()
        return space.id


def _published(pubsub: object, wait_s: float = 2.0) -> set[bytes]:
    """The labels published on the route channel within `wait_s`."""
    seen: set[bytes] = set()
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.1)  # type: ignore[attr-defined]
        if message is not None and message.get("type") == "message":
            seen.add(message["data"])
    return seen


def _route(platform: Platform, label: str) -> str | None:
    return routetable.RedisRouteTable(platform.redis).get(label)


def test_a_legal_transition_records_who_and_why(platform: Platform) -> None:
    space_id = _space(platform)
    with platform.db.session() as session:
        space = session.get(Space, space_id)
        assert space is not None and space.stage == Stage.NO_APP_FILE
        transition(space, Stage.BUILDING, "queued for build", by="api")
    with platform.db.session() as session:
        space = session.get(Space, space_id)
        assert space is not None
        assert (space.stage, space.message, space.stage_by) == (Stage.BUILDING, "queued for build", "api")
        assert space.stage_at is not None


def test_an_illegal_transition_raises_when_strict_and_is_logged_otherwise(
        platform: Platform, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    space_id = _space(platform)
    with platform.db.session() as session:
        space = session.get(Space, space_id)
        assert space is not None
        transition(space, Stage.PAUSED, "paused by its owner", by="api")
        with pytest.raises(IllegalTransition, match="PAUSED -> RUNNING"):
            transition(space, Stage.RUNNING, "", by="test")
        assert space.stage == Stage.PAUSED
        transitions.configure(Settings(data_dir=tmp_path, strict_transitions=False))
        with caplog.at_level(logging.ERROR, logger="spacehub.transitions"):
            transition(space, Stage.RUNNING, "", by="test")
        assert "illegal transition PAUSED -> RUNNING by test" in caplog.text
        assert space.stage == Stage.RUNNING


def test_the_route_follows_the_committed_row(platform: Platform) -> None:
    space_id = _space(platform)
    pubsub = platform.redis.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(routetable.ROUTES_CHANNEL)
    with platform.db.session() as session:
        space = session.get(Space, space_id)
        assert space is not None
        transition(space, Stage.BUILDING, "", by="test")
        transition(space, Stage.APP_STARTING, "", by="test")
        space.handle = HANDLE
    assert _route(platform, "alice-demo") is None  # a starting app gets no traffic yet

    with platform.db.session() as session:
        space = session.get(Space, space_id)
        assert space is not None
        transition(space, Stage.RUNNING, "", by="test")
        assert _route(platform, "alice-demo") is None  # not before the commit
    assert _route(platform, "alice-demo") == "127.0.0.1:7999"
    assert _published(pubsub) == {b"alice-demo"}

    with platform.db.session() as session:
        space = session.get(Space, space_id)
        assert space is not None
        space.frozen = True
    assert _route(platform, "alice-demo") is None

    with pytest.raises(RuntimeError), platform.db.session() as session:
        space = session.get(Space, space_id)
        assert space is not None
        space.frozen = False
        session.flush()
        raise RuntimeError("rolled back")
    assert _route(platform, "alice-demo") is None  # nothing committed, nothing written

    with platform.db.session() as session:
        space = session.get(Space, space_id)
        assert space is not None
        space.frozen = False
    assert _route(platform, "alice-demo") == "127.0.0.1:7999"

    with platform.db.session() as session:
        space = session.get(Space, space_id)
        assert space is not None
        space.label = "alice-renamed"
    assert _route(platform, "alice-demo") is None
    assert _route(platform, "alice-renamed") == "127.0.0.1:7999"

    with platform.db.session() as session:
        space = session.get(Space, space_id)
        session.delete(space)
    assert _route(platform, "alice-renamed") is None
    pubsub.close()


def test_a_compare_and_set_move_happens_once(platform: Platform) -> None:
    space_id = _space(platform)
    with platform.db.session() as session:
        space = session.get(Space, space_id)
        assert space is not None
        for stage in (Stage.BUILDING, Stage.RUNNING, Stage.SLEEPING):
            transition(space, stage, "", by="test")
    outcomes = []
    for _ in range(2):
        with platform.db.session() as session:
            outcomes.append(transition_if(session, space_id, Stage.SLEEPING, Stage.APP_STARTING, "waking up",
                                          by="wake"))
    assert outcomes == [True, False]
    with platform.db.session() as session:
        space = session.get(Space, space_id)
        assert space is not None and (space.stage, space.stage_by) == (Stage.APP_STARTING, "wake")


def test_the_sweep_repairs_routes_that_disagree_with_sql(platform: Platform) -> None:
    space_id = _space(platform)
    with platform.db.session() as session:
        space = session.get(Space, space_id)
        assert space is not None
        transition(space, Stage.BUILDING, "", by="test")
        transition(space, Stage.RUNNING, "", by="test")
        space.handle = HANDLE
    platform.redis.hdel(routetable.ROUTES_KEY, "alice-demo")  # a write lost (e.g. Redis restarted empty)
    platform.redis.hset(routetable.ROUTES_KEY, "nobody-here", "127.0.0.1:1")  # a space deleted while it was away
    routetable.sync_all(platform.redis, platform.db)
    assert routetable.RedisRouteTable(platform.redis).all() == {"alice-demo": "127.0.0.1:7999"}


def test_the_proxy_reloads_only_the_label_a_message_names(platform: Platform) -> None:
    first, second = _space(platform, "one"), _space(platform, "two")

    async def scenario() -> None:
        resolver = SpaceResolver(platform.settings, platform.db, redis_url(platform.settings))
        await resolver.start()
        try:
            assert {"alice-one", "alice-two"} <= resolver.spaces.keys()
            # Once a published change shows, the watcher's own full load (when it subscribes) is over.
            with platform.db.session() as session:
                space = session.get(Space, first)
                assert space is not None
                transition(space, Stage.BUILDING, "warming up", by="test")
            for _ in range(200):
                if resolver.spaces["alice-one"].message == "warming up":
                    break
                await asyncio.sleep(0.05)
            assert resolver.spaces["alice-one"].stage == Stage.BUILDING
            version = resolver.routes_version
            # Change space two behind the proxy's back (no message), then space one through the writer.
            with platform.db.session() as session:
                session.execute(Space.__table__.update().where(Space.id == second).values(message="unseen"))
            with platform.db.session() as session:
                space = session.get(Space, first)
                assert space is not None
                transition(space, Stage.RUNNING, "", by="test")
                space.handle = HANDLE
            for _ in range(100):
                if resolver.routes.get("alice-one") == "127.0.0.1:7999":
                    break
                await asyncio.sleep(0.05)
            assert resolver.routes.get("alice-one") == "127.0.0.1:7999"
            assert resolver.spaces["alice-one"].stage == Stage.RUNNING
            assert resolver.spaces["alice-two"].message == ""  # not reloaded: no message named it
            assert resolver.routes_version > version
        finally:
            await resolver.close()

    asyncio.run(scenario())
