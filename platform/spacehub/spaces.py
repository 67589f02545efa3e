"""What can be done to a space, for every entry point (REST, Hub API, CLI, UI): one place for the rules."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from spacehub import accounts, crypto
from spacehub import hardware as hardware_table
from spacehub.context import Platform
from spacehub.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    RepoNotFound,
    RevisionNotFound,
    SpaceConfigError,
    Unauthorized,
)
from spacehub.logstream import LogWriter, delete_logs
from spacehub.names import check_name, unique_label
from spacehub.queue import BUILDS, OPS, enqueue
from spacehub.repos import CommitResult
from spacehub.settings import Settings
from spacehub.spaceconfig import check_readme
from spacehub.stages import ERRORS, SERVING, SHOULD_RUN, STARTING, Stage, building_stage
from spacehub.store.db import Database
from spacehub.store.models import Build, BuildStatus, Deployment, Space, SpaceVariable, User, utcnow
from spacehub.transitions import transition

README = "README.md"  # where a space keeps its configuration (front matter)
SDKS = ("gradio", "docker", "static")
STORAGE = ("small", "medium", "large")


@dataclass(frozen=True)
class PushResult:
    sha: str
    changed: bool
    build_id: int | None  # None when nothing needs building


def space_key(owner: str, name: str) -> str:
    return f"{owner}/{name}".lower()


def find_space(session: Session, owner: str, name: str, repo_type: str = "space") -> Space | None:
    return session.scalar(select(Space).where(Space.key == space_key(owner, name), Space.repo_type == repo_type))


def can_read(session: Session, user: User | None, space: Space) -> bool:
    return not space.private or accounts.can_write(session, user, space.owner)


def get_visible(session: Session, user: User | None, owner: str, name: str, repo_type: str = "space") -> Space:
    """The space, if `user` may see it; a private space is as missing as a space that does not exist."""
    space = find_space(session, owner, name, repo_type)
    if space is None or not can_read(session, user, space):
        raise RepoNotFound(f"Repository Not Found for {repo_type} '{owner}/{name}'")
    return space


def get_writable(session: Session, user: User | None, owner: str, name: str, repo_type: str = "space") -> Space:
    space = get_visible(session, user, owner, name, repo_type)
    if not accounts.can_write(session, user, space.owner):
        raise Forbidden(f"you cannot change {repo_type} '{space.repo_id}'")
    return space


def list_visible(session: Session, user: User | None, *, author: str | None = None, search: str | None = None,
                 repo_type: str = "space", limit: int | None = None, offset: int = 0,
                 sort: str = "lastModified") -> list[Space]:
    query = select(Space).where(Space.repo_type == repo_type)
    if author:
        query = query.where(func.lower(Space.owner) == author.lower())
    if search:
        query = query.where(Space.key.contains(search.lower()))
    namespaces = [user.name_key] + [o.name_key for o in accounts.user_orgs(session, user)] if user else []
    if not (user and user.is_admin):
        query = query.where(or_(Space.private.is_(False), func.lower(Space.owner).in_(namespaces)))
    order = Space.created_at if sort == "createdAt" else Space.updated_at
    query = query.order_by(order.desc(), Space.id.desc()).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


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
    if not accounts.owner_exists(session, owner):
        raise InvalidInput(f"no user or organization named {owner!r}")
    if not accounts.can_write(session, user, owner):
        raise Forbidden(f"you cannot create repositories in the namespace {owner!r}")
    if session.scalar(select(Space.id).where(Space.key == space_key(owner, name))):
        raise Conflict(f"You already created this {repo_type} repo {owner}/{name}", code="RepoExists")
    taken = set(session.scalars(select(Space.label)))
    space = Space(owner=owner, name=name, key=space_key(owner, name), label=unique_label(owner, name, taken),
                  repo_type=repo_type, sdk=sdk, private=private, hardware=hardware or "cpu-basic",
                  storage=storage, sleep_time=sleep_time, created_by=user.id)  # stage: NO_APP_FILE
    session.add(space)
    session.flush()
    for item, secret in [(s, True) for s in secrets] + [(v, False) for v in variables]:
        set_variable(platform.settings, session, space, str(item["key"]), str(item.get("value", "")),
                     str(item.get("description") or ""), secret=secret)
    platform.repos.create(_repo_key(space))
    return space


def _repo_key(space: Space) -> str:
    prefix = "" if space.repo_type == "space" else f"{space.repo_type}s/"
    return f"{prefix}{space.owner}/{space.name}"


def repo_key(space: Space) -> str:
    """The key of the space's git repo in the RepoStore (spaces and models live side by side)."""
    return _repo_key(space)


def set_variable(settings: Settings, session: Session, space: Space, key: str, value: str, description: str = "",
                 *, secret: bool) -> None:
    """Set a variable, or a secret (sealed before it is stored: the database never holds its value)."""
    if not key or not key.replace("_", "").isalnum() or key[0].isdigit():
        raise InvalidInput(f"variable name {key!r} must be letters, digits and '_', not starting with a digit")
    if secret:
        value = crypto.seal_value(crypto.load_box(settings), space.id, key, value)
    existing = session.scalar(select(SpaceVariable).where(SpaceVariable.space_id == space.id,
                                                          SpaceVariable.key == key))
    if existing is None:
        session.add(SpaceVariable(space_id=space.id, key=key, value=value, description=description, secret=secret))
    else:
        existing.value, existing.description, existing.secret = value, description, secret


def delete_variable(session: Session, space: Space, key: str, *, secret: bool) -> None:
    row = session.scalar(select(SpaceVariable).where(SpaceVariable.space_id == space.id, SpaceVariable.key == key,
                                                     SpaceVariable.secret.is_(secret)))
    if row is None:
        raise NotFound(f"{space.repo_id} has no {'secret' if secret else 'variable'} named {key!r}",
                       code="VariableNotFound")
    session.delete(row)


def request_hardware(platform: Platform, session: Session, space: Space, flavor: str,
                     sleep_time: int | None = None) -> None:
    """New hardware for the space; a running app moves to it at once (restarted, as on the Hub)."""
    hardware_table.check(platform.settings, flavor)
    if sleep_time is not None:
        set_sleep_time(session, space, sleep_time)
    changed, space.hardware = flavor != space.hardware, flavor
    if changed:
        restart_if_running(platform, session, space)


def set_sleep_time(session: Session, space: Space, seconds: int | None) -> None:
    """Idle seconds before the space sleeps; -1 never; None the platform's default."""
    if seconds is not None and seconds != -1 and seconds < 1:
        raise InvalidInput(f"sleep time must be a number of seconds, or -1 to never sleep (got {seconds})")
    space.sleep_time = seconds


def set_visibility(session: Session, space: Space, *, private: bool) -> None:
    space.private = private
    space.updated_at = utcnow()


def restart_if_running(platform: Platform, session: Session, space: Space) -> None:
    """A running app sees a new environment (hardware, variables, secrets, name) only when it starts again.

    A build in progress needs nothing: its revision starts with the environment as it is by then.
    """
    if (space.repo_type == "space" and space.stage in SHOULD_RUN and space.stage != Stage.RUNNING_BUILDING
            and space.desired_sha):
        restart(platform, session, space)


def commit_upload(platform: Platform, session: Session, space: Space, tree: Path, message: str,
                  author: str) -> PushResult:
    """A whole new tree for the space (REST upload, CLI push): commit it, then build if anything changed."""
    readme = tree / README
    check_commit_config(session, space, readme.read_bytes() if readme.is_file() else None)
    release_connection(session)
    result = platform.repos.commit_tree(_repo_key(space), tree, message, author)
    return after_commit(platform, session, space, result)


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


def after_commit(platform: Platform, session: Session, space: Space, result: CommitResult) -> PushResult:
    """Every path that lands a commit ends here: record the revision and enqueue its build."""
    space.updated_at = utcnow()
    if space.repo_type != "space" or space.stage == Stage.PAUSED:
        # A model never builds; a paused space stays paused until restarted, which builds this revision.
        space.desired_sha = result.sha
        return PushResult(result.sha, result.changed, None)
    existing = session.scalar(select(Build).where(Build.space_id == space.id, Build.sha == result.sha))
    built = existing is not None and existing.status == BuildStatus.SUCCEEDED and space.desired_sha == result.sha
    if existing is not None and (existing.status in BuildStatus.ACTIVE or
                                 (built and space.running_sha == result.sha and space.stage in SERVING) or
                                 (built and space.stage in STARTING)):
        # The same tree again: coalesce into the build that exists (or that already serves).
        return PushResult(result.sha, result.changed, None)
    build_id = request_build(platform, session, space, result.sha, existing)
    return PushResult(result.sha, result.changed, build_id)


def request_build(platform: Platform, session: Session, space: Space, sha: str,
                  existing: Build | None = None, *, factory: bool = False, by: str = "api") -> int:
    """One build row per (space, sha); a newer request supersedes older queued or running ones."""
    for older in session.scalars(select(Build).where(Build.space_id == space.id, Build.sha != sha,
                                                     Build.status.in_(BuildStatus.ACTIVE))):
        older.status = BuildStatus.SUPERSEDED
        older.finished_at = utcnow()
    build = existing or session.scalar(select(Build).where(Build.space_id == space.id, Build.sha == sha))
    if build is None:
        build = Build(space_id=space.id, sha=sha)
        session.add(build)
    build.status, build.error, build.artifact = BuildStatus.QUEUED, "", None
    build.created_at, build.started_at, build.finished_at = utcnow(), None, None
    space.desired_sha, space.restarts = sha, 0
    transition(space, building_stage(Stage(space.stage)), "queued for build", by=by)
    session.flush()
    LogWriter(platform.redis, space.id, "build").reset()
    first_of_owner = not _owner_has_queued_builds(session, space.owner, build.id)
    session.commit()  # the worker must see the row before it picks the job up
    build.job_id = enqueue(platform.redis, BUILDS, "spacehub_runner.jobs.build", build.id, factory,
                           timeout=platform.settings.build_job_timeout_s, at_front=first_of_owner)
    return build.id


def _owner_has_queued_builds(session: Session, owner: str, build_id: int) -> bool:
    """Does another build of this owner's spaces wait in the queue?

    The queue's fairness rule: an owner's build goes to the front when none of theirs waits there yet, and to the
    back behind their own otherwise. So one user's backlog of thirty never delays another user's first build by
    more than the builds already running (and other owners' firsts); it still runs in order, among their own."""
    waiting = session.scalar(select(Build.id).join(Space, Space.id == Build.space_id)
                             .where(Space.owner == owner, Build.status == BuildStatus.QUEUED, Build.id != build_id)
                             .limit(1))
    return waiting is not None


def last_deployment(session: Session, build: Build) -> Deployment | None:
    """The latest start of this build's revision (spacehub_runner.deployments writes them)."""
    return session.scalar(select(Deployment).where(Deployment.build_id == build.id)
                          .order_by(Deployment.id.desc()).limit(1))


def find_build(session: Session, space: Space, sha: str) -> Build:
    build = session.scalar(select(Build).where(Build.space_id == space.id, Build.sha == sha))
    if build is None:
        raise RevisionNotFound(f"no build of revision {sha!r} for {space.repo_id}")
    return build


def restart(platform: Platform, session: Session, space: Space, *, factory: bool = False) -> None:
    if not space.desired_sha:
        raise Conflict(f"space '{space.repo_id}' has no files yet", code="NoRevision")
    if factory or space.running_sha != space.desired_sha:
        request_build(platform, session, space, space.desired_sha, factory=factory)
        return
    transition(space, Stage.RUNNING_APP_STARTING if space.stage in SERVING else Stage.APP_STARTING, "restarting",
               by="api")
    space.restarts = 0
    session.commit()
    enqueue(platform.redis, OPS, "spacehub_runner.jobs.start", space.id, True)


def stop(platform: Platform, session: Session, space: Space, *, stage: Stage = Stage.STOPPED) -> None:
    for build in session.scalars(select(Build).where(Build.space_id == space.id,
                                                     Build.status.in_(BuildStatus.ACTIVE))):
        build.status = BuildStatus.SUPERSEDED
    transition(space, stage, "paused by its owner" if stage == Stage.PAUSED else "stopped", by="api")
    session.commit()  # (its route goes with it: spacehub.routes.watch)
    enqueue(platform.redis, OPS, "spacehub_runner.jobs.stop", space.id)


def delete(platform: Platform, session: Session, space: Space) -> None:
    """Gone at once for every client (404 on its host and API); the app is stopped by the worker.

    The route goes, and the proxy forgets the label, when the delete commits (spacehub.routes.watch)."""
    handle, space_id, key, repo_type = space.handle, space.id, _repo_key(space), space.repo_type
    session.delete(space)
    session.commit()
    platform.repos.delete(key)
    if repo_type == "space":
        delete_logs(platform.redis, space_id)
        enqueue(platform.redis, OPS, "spacehub_runner.jobs.teardown", space_id, handle)


def staging_dir(platform: Platform) -> Path:
    root = platform.settings.data_dir / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="upload-", dir=root))


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
