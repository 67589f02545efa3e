"""Queueing a space's app work for the runner: a build of a revision, or a restart of the build that serves.

One build row per (space, revision); a newer request supersedes older queued or running ones. Anything that
changes what a running app sees (hardware, variables, secrets, its name) restarts it here, as on the Hub; the
old process serves until the new one is ready.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from spacehub.context import Platform
from spacehub.errors import Conflict, RevisionNotFound
from spacehub.logstream import LogWriter
from spacehub.queue import BUILDS, OPS, enqueue
from spacehub.stages import SERVING, SHOULD_RUN, Stage, building_stage
from spacehub.store.models import Build, BuildStatus, Deployment, Space, utcnow
from spacehub.transitions import transition


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


def restart_if_running(platform: Platform, session: Session, space: Space) -> None:
    """A running app sees a new environment (hardware, variables, secrets, name) only when it starts again.

    A build in progress needs nothing: its revision starts with the environment as it is by then.
    """
    if (space.repo_type == "space" and space.stage in SHOULD_RUN and space.stage != Stage.RUNNING_BUILDING
            and space.desired_sha):
        restart(platform, session, space)
