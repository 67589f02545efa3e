"""A commit that lands while the previous revision's build ends, on a real redis-server and a real database.

The git work of a commit takes seconds on a loaded machine, and the request's database session lets go of its
transaction meanwhile (`commits.release_connection`). If the build of the previous revision ends in that window
(here: NO_APP_FILE, a static space with no page yet), the space must still read BUILDING once the commit is
recorded: its new revision is queued for build. Deciding from the stage read before the git work (BUILDING, so
"no change") left SQL at the finished build's NO_APP_FILE while the new build waited, and a client waiting for
a final stage took NO_APP_FILE for the new revision's verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from spacehub import accounts, commits, spaces
from spacehub.context import Platform
from spacehub.settings import Settings
from spacehub.stages import Stage
from spacehub.store.models import Build, BuildStatus, Space
from spacehub_runner import jobs
from support import pg
from support.faults import RedisServer

README = b"---\ntitle: Race\nsdk: static\napp_file: index.html\n---\n"


@pytest.fixture
def platform(tmp_path: Path, redis_server: RedisServer) -> Platform:
    settings = Settings(data_dir=tmp_path / "data", redis_url=redis_server.url, strict_transitions=True,
                        database_url=pg.database_url(tmp_path / "data" / "spacehub.db"))
    return Platform.open(settings)


def _space_without_a_page(platform: Platform) -> int:
    """A static space whose first revision (a README, no index.html) is queued for build; its build's id."""
    with platform.db.session() as session:
        user = accounts.create_user(session, "alice")
        space = spaces.create(platform, session, user, "alice", "race", sdk="static")
        outcome = commits.commit(platform, session, space, user, "main", {"README.md": _file(platform, README)},
                                 [], "first", "", None)
        session.commit()
        assert outcome.build_id is not None
        return outcome.build_id


def _file(platform: Platform, data: bytes) -> Path:
    path = platform.settings.data_dir / "tmp" / f"added-{len(data)}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _ending_first(platform: Platform, first_build: int, git_work: Callable[..., Any]) -> Callable[..., Any]:
    """The repo's git work, with the first build ending (as its worker ends it: no app file) just before."""

    def work(*args: Any, **kwargs: Any) -> Any:
        jobs._finish_build(platform, first_build, BuildStatus.FAILED, "no index.html", Stage.NO_APP_FILE)
        return git_work(*args, **kwargs)

    return work


@pytest.mark.parametrize("path", ["hub commit", "upload"])
def test_a_commit_while_the_last_build_ends_leaves_the_space_building(platform: Platform, path: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    first_build = _space_without_a_page(platform)
    with platform.db.session() as session:
        space = session.scalar(select(Space).where(Space.name == "race"))
        user = accounts.get_user(session, "alice")
        assert space is not None and user is not None and space.stage == Stage.BUILDING
        if path == "hub commit":
            monkeypatch.setattr(platform.repos, "commit_changes",
                                _ending_first(platform, first_build, platform.repos.commit_changes))
            outcome = commits.commit(platform, session, space, user, "main",
                                     {"index.html": _file(platform, b"<h1>page</h1>")}, [], "page", "", None)
        else:
            tree = platform.settings.data_dir / "tmp" / "tree"
            tree.mkdir(parents=True)
            (tree / "README.md").write_bytes(README)
            (tree / "index.html").write_bytes(b"<h1>page</h1>")
            monkeypatch.setattr(platform.repos, "commit_tree",
                                _ending_first(platform, first_build, platform.repos.commit_tree))
            outcome = commits.commit_upload(platform, session, space, tree, "page", "alice")
        session.commit()
    assert outcome.build_id is not None and outcome.build_id != first_build
    with platform.db.session() as session:
        space = session.scalar(select(Space).where(Space.name == "race"))
        first = session.get(Build, first_build)
        assert first is not None and first.status == BuildStatus.FAILED  # the first build did end in the window
        assert space is not None and space.desired_sha == outcome.sha
        assert space.stage == Stage.BUILDING, (space.stage, space.message)
        assert session.get(Build, outcome.build_id).status == BuildStatus.QUEUED  # type: ignore[union-attr]
