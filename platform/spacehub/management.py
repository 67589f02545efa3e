"""Changing a repository (space or model) after it exists: Hub-API commits, move, duplicate, variables, secrets.

The single-field settings (hardware, sleep time, visibility) live in `spaces`. Anything that changes what a
running app sees (hardware, variables, secrets, its name) restarts it, as on the Hub, so the change reaches the
app; the old process serves until the new one is ready (`spaces.restart_if_running`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from spacehub import accounts, repometa, spaces
from spacehub.context import Platform
from spacehub.errors import Conflict, Forbidden, InvalidInput, RevisionNotFound
from spacehub.names import check_name, unique_label
from spacehub.repos import DEFAULT_BRANCH
from spacehub.store.models import Space, SpaceVariable, User, utcnow


@dataclass(frozen=True)
class CommitOutcome:
    sha: str
    changed: bool
    build_id: int | None


# Commits ----------------------------------------------------------------------------------------------------


def commit(platform: Platform, session: Session, space: Space, user: User, branch: str,
           additions: Mapping[str, Path], deletions: Sequence[str], summary: str, description: str,
           parent_commit: str | None) -> CommitOutcome:
    """Overlay additions and deletions on `branch`; a commit to the default branch builds like any upload."""
    key = spaces.repo_key(space)
    if platform.repos.head(key, branch) is None and (branch != DEFAULT_BRANCH or platform.repos.refs(key)["branches"]):
        raise RevisionNotFound(f"Invalid rev id: {branch} (commits go to an existing branch of "
                               f"'{space.repo_id}')")
    parent = _full_parent(platform, key, parent_commit)
    if spaces.README in additions:
        spaces.check_commit_config(session, space, additions[spaces.README].read_bytes(),
                                   on_main=branch == DEFAULT_BRANCH)
    message = f"{summary}\n\n{description}" if description.strip() else summary
    spaces.release_connection(session)
    result = platform.repos.commit_changes(key, dict(additions), list(deletions), message or "Upload files",
                                           user.name, parent_commit=parent, branch=branch)
    if branch != DEFAULT_BRANCH:
        space.updated_at = utcnow()
        return CommitOutcome(result.sha, result.changed, None)
    if space.repo_type != "space":  # a space's card is read by its build; models and datasets have none
        repometa.refresh(platform, space, result.sha)
    pushed = spaces.after_commit(platform, session, space, result)
    return CommitOutcome(pushed.sha, pushed.changed, pushed.build_id)


def _full_parent(platform: Platform, key: str, parent_commit: str | None) -> str | None:
    """The full id of a (possibly short) parentCommit; a commit that is not in the repo cannot be the head."""
    if parent_commit is None:
        return None
    try:
        return platform.repos.resolve(key, parent_commit)
    except (RevisionNotFound, InvalidInput):
        raise Conflict(f"parent commit {parent_commit} is not in the repository: the branch has moved on "
                       "(or never had it); fetch the current head and try again") from None


# Names and visibility ---------------------------------------------------------------------------------------


def move(platform: Platform, session: Session, user: User, space: Space, new_owner: str, new_name: str) -> None:
    """Rename or transfer: the repo, its subdomain and (for a running space) the app's SPACE_* follow."""
    check_name(new_owner, "owner")
    check_name(new_name)
    if not accounts.owner_exists(session, new_owner):
        raise InvalidInput(f"no user or organization named {new_owner!r}")
    if not accounts.can_write(session, user, new_owner):
        raise Forbidden(f"you cannot create repositories in the namespace {new_owner!r}")
    new_key = spaces.space_key(new_owner, new_name)
    if new_key != space.key and session.scalar(select(Space.id).where(Space.key == new_key)):
        raise Conflict(f"a repository named {new_owner}/{new_name} already exists", code="RepoExists")
    old_repo = spaces.repo_key(space)
    taken = set(session.scalars(select(Space.label).where(Space.id != space.id)))
    space.owner, space.name, space.key = new_owner, new_name, new_key
    space.label = unique_label(new_owner, new_name, taken)
    session.flush()  # a clash in SQL shows before the repository moves
    platform.repos.move(old_repo, spaces.repo_key(space))
    try:
        session.commit()
    except Exception:
        platform.repos.move(spaces.repo_key(space), old_repo)
        raise
    # (The old label's route goes with the commit: spacehub.routes.watch.)
    spaces.restart_if_running(platform, session, space)


# Duplicates -------------------------------------------------------------------------------------------------


def duplicate(platform: Platform, session: Session, user: User, source: Space, owner: str, name: str, *,
              private: bool | None, hardware: str | None, sleep_time: int | None,
              secrets: Sequence[dict[str, Any]], variables: Sequence[dict[str, Any]]) -> Space:
    """A new repo with the source's files and variables (never its secrets: only those given here)."""
    inherited = {row.key: {"key": row.key, "value": row.value, "description": row.description}
                 for row in _rows(session, source, secret=False)}
    inherited.update({str(item["key"]): item for item in variables})
    copy = spaces.create(platform, session, user, owner, name, repo_type=source.repo_type, sdk=source.sdk,
                         private=source.private if private is None else private,
                         hardware=hardware or source.hardware, storage=source.storage,
                         sleep_time=source.sleep_time if sleep_time is None else sleep_time,
                         secrets=secrets, variables=list(inherited.values()))
    copy.card_data = dict(source.card_data or {})
    head = platform.repos.head(spaces.repo_key(source))
    if head is None:
        return copy
    staging = spaces.staging_dir(platform)
    try:
        platform.repos.checkout(spaces.repo_key(source), head, staging)
        spaces.commit_upload(platform, session, copy, staging, f"Duplicated from {source.repo_id}", user.name)
    finally:
        spaces.remove_tree(staging)
    return copy


# Variables and secrets --------------------------------------------------------------------------------------


def variable_rows(session: Session, space: Space, *, secret: bool) -> list[SpaceVariable]:
    """A space's variables, or its secrets (whose values must never leave the platform but for its app)."""
    return _rows(session, space, secret=secret)


def put_variable(platform: Platform, session: Session, space: Space, key: str, value: str, description: str,
                 *, secret: bool) -> None:
    existing = _row(session, space, key)
    if existing is not None and existing.secret != secret:
        kind = "secret" if existing.secret else "variable"
        raise Conflict(f"{key!r} is already a {kind} of {space.repo_id}: delete it first", code="VariableExists")
    spaces.set_variable(platform.settings, session, space, key, value, description, secret=secret)
    session.flush()
    spaces.restart_if_running(platform, session, space)


def delete_variable(platform: Platform, session: Session, space: Space, key: str, *, secret: bool) -> None:
    spaces.delete_variable(session, space, key, secret=secret)
    session.flush()
    spaces.restart_if_running(platform, session, space)


def _rows(session: Session, space: Space, *, secret: bool) -> list[SpaceVariable]:
    return list(session.scalars(select(SpaceVariable).where(SpaceVariable.space_id == space.id,
                                                            SpaceVariable.secret.is_(secret))
                                .order_by(SpaceVariable.key)))


def _row(session: Session, space: Space, key: str) -> SpaceVariable | None:
    return session.scalar(select(SpaceVariable).where(SpaceVariable.space_id == space.id,
                                                      SpaceVariable.key == key))
