"""The build queue's fairness rule, on a real redis-server and a real database (no worker takes the jobs, so the
queue's order is what is looked at): one user's backlog never stands in front of another user's first build."""

from __future__ import annotations

from pathlib import Path

import pytest

from spacehub import accounts, builds, spaces
from spacehub.context import Platform
from spacehub.queue import BUILDS, queue
from spacehub.settings import Settings
from support import pg
from support.faults import RedisServer


@pytest.fixture
def platform(tmp_path: Path, redis_server: RedisServer) -> Platform:
    settings = Settings(data_dir=tmp_path / "data", redis_url=redis_server.url,
                        database_url=pg.database_url(tmp_path / "data" / "spacehub.db"))
    return Platform.open(settings)


def _queue_build(platform: Platform, owner: str, name: str, sha: str) -> int:
    with platform.db.session() as session:
        user = accounts.get_user(session, owner)
        space = spaces.create(platform, session, user, owner, name, sdk="static")
        return builds.request_build(platform, session, space, sha)


def _queued_build_ids(platform: Platform) -> list[int]:
    """The build ids of the queued build jobs, in the order workers take them."""
    return [int(job.args[0]) for job in queue(platform.redis, BUILDS).jobs]


def test_a_users_first_build_goes_before_another_users_backlog(platform: Platform) -> None:
    with platform.db.session() as session:
        for name in ("alice", "bob"):
            accounts.create_user(session, name)
    alice = [_queue_build(platform, "alice", f"heavy-{n}", f"{n:040x}") for n in range(5)]
    bob = _queue_build(platform, "bob", "one", "b" * 40)
    order = _queued_build_ids(platform)
    # bob's one build is first; alice's first went to the front when she had none waiting, the rest in order.
    assert order == [bob, *alice], order
    # A second build of bob's waits behind his first, like alice's: the rule is per owner, not a way to jump.
    again = _queue_build(platform, "bob", "two", "c" * 40)
    order = _queued_build_ids(platform)
    assert order == [bob, *alice, again], order
