"""Landing a commit on a repository: a whole tree (REST upload, CLI push, duplicate) or a Hub API commit of
additions and deletions on a branch. Every commit to the default branch ends in `after_commit`, which records
the revision and queues its build."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from spacehub import builds, repometa
from spacehub.access import repo_key
from spacehub.context import Platform
from spacehub.errors import Conflict, InvalidInput, RevisionNotFound, SpaceConfigError
from spacehub.repos import DEFAULT_BRANCH, CommitResult
from spacehub.spaceconfig import check_readme
from spacehub.stages import ERRORS, SERVING, STARTING, Stage
from spacehub.store.db import Database
from spacehub.store.models import Build, BuildStatus, Space, User, utcnow
from spacehub.transitions import transition

README = "README.md"  # where a space keeps its configuration (front matter)


@dataclass(frozen=True)
class CommitOutcome:
    sha: str
    changed: bool
    build_id: int | None  # None when nothing needs building


def commit_upload(platform: Platform, session: Session, space: Space, tree: Path, message: str,
                  author: str) -> CommitOutcome:
    """A whole new tree for the space (REST upload, CLI push): commit it, then build if anything changed."""
    readme = tree / README
    check_commit_config(session, space, readme.read_bytes() if readme.is_file() else None)
    release_connection(session)
    result = platform.repos.commit_tree(repo_key(space), tree, message, author)
    return after_commit(platform, session, space, result)


def commit(platform: Platform, session: Session, space: Space, user: User, branch: str,
           additions: Mapping[str, Path], deletions: Sequence[str], summary: str, description: str,
           parent_commit: str | None) -> CommitOutcome:
    """Overlay additions and deletions on `branch`; a commit to the default branch builds like any upload."""
    key = repo_key(space)
    if platform.repos.head(key, branch) is None and (branch != DEFAULT_BRANCH or platform.repos.refs(key)["branches"]):
        raise RevisionNotFound(f"Invalid rev id: {branch} (commits go to an existing branch of "
                               f"'{space.repo_id}')")
    parent = _full_parent(platform, key, parent_commit)
    if README in additions:
        check_commit_config(session, space, additions[README].read_bytes(), on_main=branch == DEFAULT_BRANCH)
    message = f"{summary}\n\n{description}" if description.strip() else summary
    release_connection(session)
    result = platform.repos.commit_changes(key, dict(additions), list(deletions), message or "Upload files",
                                           user.name, parent_commit=parent, branch=branch)
    if branch != DEFAULT_BRANCH:
        space.updated_at = utcnow()
        return CommitOutcome(result.sha, result.changed, None)
    if space.repo_type != "space":  # a space's card is read by its build; models and datasets have none
        repometa.refresh(platform, space, result.sha)
    return after_commit(platform, session, space, result)


def _full_parent(platform: Platform, key: str, parent_commit: str | None) -> str | None:
    """The full id of a (possibly short) parentCommit; a commit that is not in the repo cannot be the head."""
    if parent_commit is None:
        return None
    try:
        return platform.repos.resolve(key, parent_commit)
    except (RevisionNotFound, InvalidInput):
        raise Conflict(f"parent commit {parent_commit} is not in the repository: the branch has moved on "
                       "(or never had it); fetch the current head and try again") from None


def release_connection(session: Session) -> None:
    """End the session's transaction before git work, which waits its turn on the repo's lock and can take
    seconds: a database connection held meanwhile is one the pool cannot lend (50 uploads at once emptied it).
    The session takes a connection again when next used; its objects stay loaded (expire_on_commit=False).
    A session with changes of its own keeps its transaction, so a failed commit still undoes them all."""
    if not Database.wrote(session):
        session.commit()


def check_commit_config(session: Session, space: Space, readme: bytes | None, *, on_main: bool = True) -> None:
    """A space's README front matter is checked before a commit lands, as its build would check it: a broken
    or hostile one is refused (SpaceConfigError naming the rule, a 4xx) and nothing is written, so no build
    job ever sees it. A space with no app serving shows the refusal as CONFIG_ERROR at once; one that serves
    an older revision keeps serving it (as when a new revision's build fails), and the refusal is the answer."""
    if space.repo_type != "space":
        return
    try:
        check_readme(readme)
    except SpaceConfigError as exc:
        if on_main and Stage(space.stage) in ERRORS:
            transition(space, Stage.CONFIG_ERROR, exc.message, by="api")
            session.commit()  # the stage stays though the request fails
        raise


def after_commit(platform: Platform, session: Session, space: Space, result: CommitResult) -> CommitOutcome:
    """Every path that lands a commit ends here: record the revision and enqueue its build."""
    _reload(session, space)
    space.updated_at = utcnow()
    if space.repo_type != "space" or space.stage == Stage.PAUSED:
        # A model never builds; a paused space stays paused until restarted, which builds this revision.
        space.desired_sha = result.sha
        return CommitOutcome(result.sha, result.changed, None)
    existing = session.scalar(select(Build).where(Build.space_id == space.id, Build.sha == result.sha))
    built = existing is not None and existing.status == BuildStatus.SUCCEEDED and space.desired_sha == result.sha
    if existing is not None and (existing.status in BuildStatus.ACTIVE or
                                 (built and space.running_sha == result.sha and space.stage in SERVING) or
                                 (built and space.stage in STARTING)):
        # The same tree again: coalesce into the build that exists (or that already serves).
        return CommitOutcome(result.sha, result.changed, None)
    build_id = builds.request_build(platform, session, space, result.sha, existing)
    return CommitOutcome(result.sha, result.changed, build_id)


def _reload(session: Session, space: Space) -> None:
    """Read the space's row again: the commit's git work ran outside any transaction (`release_connection`), and a
    build job may have moved the stage meanwhile, e.g. the previous revision's build ending NO_APP_FILE. Decided
    from the row as loaded before, a move to BUILDING would look like no move and never be written, leaving the
    finished build's stage in SQL while the new build waits. (Pending changes of the session are flushed first.)"""
    session.scalars(select(Space).where(Space.id == space.id).execution_options(populate_existing=True)).one()


def staging_dir(platform: Platform) -> Path:
    """A fresh folder under the data dir's tmp/ for a tree on its way into a commit."""
    root = platform.settings.data_dir / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="upload-", dir=root))


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
