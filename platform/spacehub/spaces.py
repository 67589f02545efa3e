"""The life of a repository (space, model or dataset), for every entry point (REST, Hub API, CLI, UI): create,
rename or transfer, duplicate, its single-field settings (hardware, sleep time, visibility), stop and delete.

Who may see and change a repo is `spacehub.access`; commits are `spacehub.commits`; builds and restarts are
`spacehub.builds`; variables and secrets are `spacehub.variables`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from spacehub import accounts, builds, commits
from spacehub import hardware as hardware_table
from spacehub import variables as space_variables
from spacehub.access import repo_key, space_key
from spacehub.context import Platform
from spacehub.errors import Conflict, Forbidden, InvalidInput, Unauthorized
from spacehub.logstream import delete_logs
from spacehub.names import check_name, unique_label
from spacehub.queue import OPS, enqueue
from spacehub.stages import Stage
from spacehub.store.models import Build, BuildStatus, Space, User, utcnow
from spacehub.transitions import transition

SDKS = ("gradio", "docker", "static")
STORAGE = ("small", "medium", "large")


def create(platform: Platform, session: Session, user: User | None, owner: str | None, name: str, *,
           repo_type: str = "space", sdk: str | None = None, private: bool = False, hardware: str | None = None,
           storage: str | None = None, sleep_time: int | None = None,
           secrets: Sequence[dict[str, Any]] = (), variables: Sequence[dict[str, Any]] = ()) -> Space:
    if user is None:
        raise Unauthorized("creating a repository needs a token")
    owner = owner or user.name
    # Reserved names are refused when an owner is created (users, orgs); the built-in `admin` owns spaces too.
    check_name(owner, "owner")
    check_name(name)
    if repo_type == "space" and sdk not in SDKS:
        raise InvalidInput(f"sdk must be one of {', '.join(SDKS)} (got {sdk!r})")
    if hardware is not None:
        hardware_table.check(platform.settings, hardware)
    if storage is not None and storage not in STORAGE:
        raise InvalidInput(f"storage must be one of {', '.join(STORAGE)} (got {storage!r})")
    _check_namespace(session, user, owner)
    if session.scalar(select(Space.id).where(Space.key == space_key(owner, name))):
        raise Conflict(f"You already created this {repo_type} repo {owner}/{name}", code="RepoExists")
    taken = set(session.scalars(select(Space.label)))
    space = Space(owner=owner, name=name, key=space_key(owner, name), label=unique_label(owner, name, taken),
                  repo_type=repo_type, sdk=sdk, private=private, hardware=hardware or hardware_table.DEFAULT_FLAVOR,
                  storage=storage, sleep_time=sleep_time, created_by=user.id)  # stage: NO_APP_FILE
    session.add(space)
    session.flush()
    for item, secret in [(s, True) for s in secrets] + [(v, False) for v in variables]:
        space_variables.put(platform, session, space, str(item["key"]), str(item.get("value", "")),
                      str(item.get("description") or ""), secret=secret)
    platform.repos.create(repo_key(space))
    return space


def _check_namespace(session: Session, user: User, owner: str) -> None:
    if not accounts.owner_exists(session, owner):
        raise InvalidInput(f"no user or organization named {owner!r}")
    if not accounts.can_write(session, user, owner):
        raise Forbidden(f"you cannot create repositories in the namespace {owner!r}")


def move(platform: Platform, session: Session, user: User, space: Space, new_owner: str, new_name: str) -> None:
    """Rename or transfer: the repo, its subdomain and (for a running space) the app's SPACE_* follow."""
    check_name(new_owner, "owner")
    check_name(new_name)
    _check_namespace(session, user, new_owner)
    new_key = space_key(new_owner, new_name)
    if new_key != space.key and session.scalar(select(Space.id).where(Space.key == new_key)):
        raise Conflict(f"a repository named {new_owner}/{new_name} already exists", code="RepoExists")
    old_repo = repo_key(space)
    taken = set(session.scalars(select(Space.label).where(Space.id != space.id)))
    space.owner, space.name, space.key = new_owner, new_name, new_key
    space.label = unique_label(new_owner, new_name, taken)
    session.flush()  # a clash in SQL shows before the repository moves
    platform.repos.move(old_repo, repo_key(space))
    try:
        session.commit()
    except Exception:
        platform.repos.move(repo_key(space), old_repo)
        raise
    # (The old label's route goes with the commit: spacehub.routetable.watch.)
    builds.restart_if_running(platform, session, space)


def duplicate(platform: Platform, session: Session, user: User, source: Space, owner: str, name: str, *,
              private: bool | None, hardware: str | None, sleep_time: int | None,
              secrets: Sequence[dict[str, Any]], variables: Sequence[dict[str, Any]]) -> Space:
    """A new repo with the source's files and variables (never its secrets: only those given here)."""
    inherited = {row.key: {"key": row.key, "value": row.value, "description": row.description}
                 for row in space_variables.rows(session, source, secret=False)}
    inherited.update({str(item["key"]): item for item in variables})
    copy = create(platform, session, user, owner, name, repo_type=source.repo_type, sdk=source.sdk,
                  private=source.private if private is None else private,
                  hardware=hardware or source.hardware, storage=source.storage,
                  sleep_time=source.sleep_time if sleep_time is None else sleep_time,
                  secrets=secrets, variables=list(inherited.values()))
    copy.card_data = dict(source.card_data or {})
    head = platform.repos.head(repo_key(source))
    if head is None:
        return copy
    staging = commits.staging_dir(platform)
    try:
        platform.repos.checkout(repo_key(source), head, staging)
        commits.commit_upload(platform, session, copy, staging, f"Duplicated from {source.repo_id}", user.name)
    finally:
        commits.remove_tree(staging)
    return copy


def request_hardware(platform: Platform, session: Session, space: Space, flavor: str,
                     sleep_time: int | None = None) -> None:
    """New hardware for the space; a running app moves to it at once (restarted, as on the Hub)."""
    hardware_table.check(platform.settings, flavor)
    if sleep_time is not None:
        set_sleep_time(session, space, sleep_time)
    changed, space.hardware = flavor != space.hardware, flavor
    if changed:
        builds.restart_if_running(platform, session, space)


def set_sleep_time(session: Session, space: Space, seconds: int | None) -> None:
    """Idle seconds before the space sleeps; -1 never; None the platform's default."""
    if seconds is not None and seconds != -1 and seconds < 1:
        raise InvalidInput(f"sleep time must be a number of seconds, or -1 to never sleep (got {seconds})")
    space.sleep_time = seconds


def set_visibility(session: Session, space: Space, *, private: bool) -> None:
    space.private = private
    space.updated_at = utcnow()


def stop(platform: Platform, session: Session, space: Space, *, stage: Stage = Stage.STOPPED) -> None:
    for build in session.scalars(select(Build).where(Build.space_id == space.id,
                                                     Build.status.in_(BuildStatus.ACTIVE))):
        build.status = BuildStatus.SUPERSEDED
    transition(space, stage, "paused by its owner" if stage == Stage.PAUSED else "stopped", by="api")
    session.commit()  # (its route goes with it: spacehub.routetable.watch)
    enqueue(platform.redis, OPS, "spacehub_runner.jobs.stop", space.id)


def delete(platform: Platform, session: Session, space: Space) -> None:
    """Gone at once for every client (404 on its host and API); the app is stopped by the worker.

    The route goes, and the proxy forgets the label, when the delete commits (spacehub.routetable.watch)."""
    handle, space_id, key, repo_type = space.handle, space.id, repo_key(space), space.repo_type
    session.delete(space)
    session.commit()
    platform.repos.delete(key)
    if repo_type == "space":
        delete_logs(platform.redis, space_id)
        enqueue(platform.redis, OPS, "spacehub_runner.jobs.teardown", space_id, handle)
