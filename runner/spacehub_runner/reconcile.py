"""The reconciler's healing of work in flight: builds and starts whose job is gone, stages that promise work no
job is doing, and commits no build was ever asked for. Called by the supervisor on every tick (and so at its
start-up); SQL is the truth, and what runs is asked of the world (the job's process, then RQ), never assumed.

It also removes what no record owns (`orphans`): app process groups, fork-servers and build folders, each once
it has looked orphaned for SPACEHUB_LOST_JOB_S.

A job is lost when the process that ran it is gone (`liveness`: known at once on this host) or when RQ no longer
holds it as queued or running (known only through Redis, so acted on after SPACEHUB_LOST_JOB_S, since Redis may
be merely slow or restarting). A lost build is queued once more (a worker killed under it is no verdict on the
build), then failed; a lost start likewise. A failed one leaves the space in the stage of what actually serves:
RUNNING when the old revision still answers, else the error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import time
from collections.abc import Hashable

import redis
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import select
from sqlalchemy.orm import Session

from spacehub import access, builds
from spacehub.context import Platform
from spacehub.logstream import LogWriter
from spacehub.queue import BUILDS, OPS, enqueue, queue
from spacehub.stages import BUILDING_STAGES, STARTING, Stage, starting_stage
from spacehub.store.models import Build, BuildStatus, Deployment, DeployOutcome, Space, utcnow
from spacehub.transitions import transition
from spacehub_runner import backends, deployments, gpus, liveness, orphans
from spacehub_runner.plugs import Handle

log = logging.getLogger("spacehub.reconcile")

TRIES = 2  # a build or start whose job is lost is run this many times in all before it is failed
CUT_OFF = "cut off: "  # the error of a deployment whose job was lost (counted per revision)
_GONE = (None, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED, JobStatus.FINISHED)


class Healer:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.settings = platform.settings
        self._missed: dict[Hashable, float] = {}  # what looked lost, since when (monotonic)
        self._seen: set[Hashable] = set()  # what looked lost this tick
        self._start_retries: dict[tuple[int, str], int] = {}  # (space, revision) -> starts queued again
        self._heads_checked = float("-inf")

    def tick(self) -> None:
        self._seen = set()
        try:
            self.heal_builds()
            self.heal_starts()
            self.heal_stages()
            if time.monotonic() - self._heads_checked >= self.settings.lost_job_s:
                self._heads_checked = time.monotonic()
                self.heal_heads()
            else:  # heads are looked at less often: what looked unbuilt at the last look still does
                self._seen |= {key for key in self._missed if isinstance(key, tuple) and key[0] == "head"}
        except redis.RedisError as exc:  # Redis away: nothing can be told or queued; next tick
            log.warning("reconciler waits for Redis: %s", exc)
        try:
            self.remove_orphans()  # (needs no Redis)
        except OSError:  # e.g. /proc unreadable: never in the way of what the supervisor does next
            log.exception("looking for orphans failed")
        self._missed = {key: since for key, since in self._missed.items() if key in self._seen}

    def _overdue(self, key: Hashable, certain: bool) -> bool:
        """Whether something that looks lost has looked so long enough to act (at once when `certain`)."""
        self._seen.add(key)
        since = self._missed.setdefault(key, time.monotonic())
        return certain or time.monotonic() - since >= self.settings.lost_job_s

    def _job_status(self, job_id: str | None) -> JobStatus | None:
        if not job_id:
            return None
        try:
            return Job.fetch(job_id, connection=self.platform.redis).get_status()
        except NoSuchJobError:
            return None

    def _lost(self, runner: str | None, job_id: str | None) -> tuple[bool, bool]:
        """(lost, certain) for a job that has started: its process first, then RQ's word."""
        alive = liveness.alive(runner)
        if alive is not None:
            return not alive, True
        return self._job_status(job_id) in _GONE, False

    # -- builds ---------------------------------------------------------------------------------------------

    def heal_builds(self) -> None:
        with self.platform.db.session() as session:
            for build in session.scalars(select(Build).where(Build.status.in_(BuildStatus.ACTIVE))):
                if build.status == BuildStatus.RUNNING:
                    lost, certain = self._lost(build.runner, build.job_id)
                else:  # queued: its job must be in Redis, queued or starting
                    lost, certain = self._job_status(build.job_id) in _GONE, False
                if lost and self._overdue(("build", build.id), certain):
                    self._heal_build(session, build)

    def _heal_build(self, session: Session, build: Build) -> None:
        space = session.get(Space, build.space_id)
        if space is None or space.desired_sha != build.sha:
            build.status, build.finished_at = BuildStatus.SUPERSEDED, utcnow()
            return
        writer = LogWriter(self.platform.redis, space.id, "build", self.settings.log_stream_max)
        timed_out = build.started_at is not None and \
            (utcnow() - build.started_at).total_seconds() >= self.settings.build_timeout_s
        if build.status == BuildStatus.QUEUED or (build.attempts < TRIES and not timed_out):
            why = "its job was lost before it ran" if build.status == BuildStatus.QUEUED else \
                "the process building it is gone (worker or work-horse killed, or Redis lost)"
            log.warning("build %s of %s: %s; queued again", build.id, space.repo_id, why)
            writer(f"==> The build stopped: {why}. Building again.")
            build.job_id = enqueue(self.platform.redis, BUILDS, "spacehub_runner.jobs.build", build.id, False,
                                   timeout=self.settings.build_job_timeout_s)
            build.status, build.runner, build.created_at = BuildStatus.QUEUED, None, utcnow()
            return
        error = (f"the build took longer than SPACEHUB_BUILD_TIMEOUT_S ({self.settings.build_timeout_s}s)"
                 if timed_out else f"the build's process was lost {build.attempts} times (killed?)")
        log.warning("build %s of %s failed: %s", build.id, space.repo_id, error)
        writer(f"==> Build failed: {error}")
        build.status, build.error, build.finished_at = BuildStatus.FAILED, error, utcnow()
        self._settle(space, build.sha, error, Stage.BUILD_ERROR)

    # -- starts ---------------------------------------------------------------------------------------------

    def heal_starts(self) -> None:
        with self.platform.db.session() as session:
            for deployment in session.scalars(select(Deployment).where(
                    Deployment.outcome == DeployOutcome.STARTING)):
                lost, certain = self._lost(deployment.runner, deployment.job_id)
                if lost and self._overdue(("deployment", deployment.id), certain):
                    self._heal_start(session, deployment, certain)

    def _heal_start(self, session: Session, deployment: Deployment, certain: bool) -> None:
        space = session.get(Space, deployment.space_id)
        error = "the process starting it is gone (worker killed, or Redis lost)"
        deployments.close(session, deployment.id, DeployOutcome.FAILED, CUT_OFF + error)
        if deployment.handle is not None and (space is None or space.handle != deployment.handle):
            handle = Handle.from_json(deployment.handle)  # started, never routed: nobody else knows it
            backends.runtime_for(self.settings, handle.runtime).stop(handle)
            deployment.drained_at = utcnow()
        if space is None:
            return
        if certain:
            # Its lock would hold every other job of the space off until it expired (the ready timeout).
            self.platform.redis.delete(_lock_key(space.id))
        if not self._serves(space):
            gpus.GpuAllocator(self.settings, self.platform.db).release(space.id)  # held for the start, if any
        if space.desired_sha != deployment.revision or space.stage not in STARTING:
            return
        log.warning("start of %s (%s) cut off: %s", space.repo_id, deployment.revision[:7], error)
        self._retry_start(session, space, error)

    def _retry_start(self, session: Session, space: Space, why: str) -> None:
        key = (space.id, space.desired_sha or "")
        cut_offs = session.scalars(select(Deployment.id).where(
            Deployment.space_id == space.id, Deployment.revision == space.desired_sha,
            Deployment.error.startswith(CUT_OFF))).all()
        if len(cut_offs) + self._start_retries.get(key, 0) >= TRIES + 1:
            self._settle(space, space.desired_sha or "", f"the start failed: {why}", Stage.RUNTIME_ERROR)
            return
        self._start_retries[key] = self._start_retries.get(key, 0) + 1
        transition(space, Stage(space.stage), f"the start stopped ({why}); starting again", by="supervisor")
        session.commit()  # before the job: it reads the stage
        enqueue(self.platform.redis, OPS, "spacehub_runner.jobs.start", space.id, True)

    # -- stages that promise work ---------------------------------------------------------------------------

    def heal_stages(self) -> None:
        with self.platform.db.session() as session:
            for space in session.scalars(select(Space).where(Space.repo_type == "space",
                                                             Space.stage.in_(BUILDING_STAGES | STARTING))):
                if space.desired_sha is None:
                    continue
                build = session.scalar(select(Build).where(Build.space_id == space.id,
                                                           Build.sha == space.desired_sha))
                if space.stage in BUILDING_STAGES:
                    if build is not None and build.status in BuildStatus.ACTIVE:
                        continue  # heal_builds watches its job
                    if self._overdue(("building", space.id, space.desired_sha), False):
                        self._heal_building(session, space, build)
                elif not self._start_under_way(session, space) and \
                        self._overdue(("starting", space.id, space.desired_sha), False):
                    self._heal_starting(session, space, build)

    def _heal_building(self, session: Session, space: Space, build: Build | None) -> None:
        sha = space.desired_sha or ""
        if build is None:
            log.warning("%s shows %s with no build of %s: building it", space.repo_id, space.stage, sha[:7])
            builds.request_build(self.platform, session, space, sha, by="supervisor")
        elif build.status == BuildStatus.SUCCEEDED:
            transition(space, starting_stage(Stage(space.stage)), f"built {sha[:7]}; queued to start",
                       by="supervisor")
            session.commit()
            enqueue(self.platform.redis, OPS, "spacehub_runner.jobs.start", space.id, True)
        else:
            self._settle(space, sha, build.error or f"the build of {sha[:7]} {build.status}", Stage.BUILD_ERROR)

    def _start_under_way(self, session: Session, space: Space) -> bool:
        if space.restart_at is not None or (space.message or "").startswith(gpus.WAITING_MESSAGE):
            return True  # a crash restart waits out its backoff; a GPU waiter waits for a device
        if self.platform.redis.exists(_lock_key(space.id)):
            return True  # a job works on it now
        if session.scalar(select(Deployment.id).where(Deployment.space_id == space.id,
                                                      Deployment.outcome == DeployOutcome.STARTING)) is not None:
            return True
        build_id = session.scalar(select(Build.id).where(Build.space_id == space.id, Build.sha == space.desired_sha))
        return self._start_queued(space.id, build_id)

    def _start_queued(self, space_id: int, build_id: int | None) -> bool:
        """Whether a start of the space waits in a queue (behind other jobs: slow, not lost)."""
        for name, func, wanted in ((OPS, "spacehub_runner.jobs.start", space_id),
                                   (BUILDS, "spacehub_runner.jobs.deploy", build_id)):
            for job in queue(self.platform.redis, name).get_jobs():
                if job.func_name == func and job.args and job.args[0] == wanted:
                    return True
        return False

    def _heal_starting(self, session: Session, space: Space, build: Build | None) -> None:
        if self._serves(space) and space.running_sha == space.desired_sha:
            transition(space, Stage.RUNNING, "", by="supervisor")  # it started; only the stage lagged
            return
        if build is None or build.status != BuildStatus.SUCCEEDED:
            builds.request_build(self.platform, session, space, space.desired_sha or "", build,
                                 by="supervisor")
            return
        log.warning("%s shows %s with no start under way: starting it", space.repo_id, space.stage)
        self._retry_start(session, space, "no job was starting it")

    # -- commits with no build ------------------------------------------------------------------------------

    def heal_heads(self) -> None:
        """A commit that landed in git while its build could not be asked for (Redis down, a crash between the
        two) is built now: HEAD and the revision the space wants must agree."""
        with self.platform.db.session() as session:
            for space in session.scalars(select(Space).where(Space.repo_type == "space")):
                if space.stage in (Stage.PAUSED, Stage.DELETING):
                    continue  # a paused space builds its HEAD when restarted
                try:
                    head = self.platform.repos.head(access.repo_key(space))
                except Exception:  # noqa: BLE001 - no repo (yet): nothing to build
                    continue
                if head is None:
                    continue
                has_build = head == space.desired_sha and session.scalar(
                    select(Build.id).where(Build.space_id == space.id, Build.sha == head)) is not None
                if has_build or not self._overdue(("head", space.id, head), False):
                    continue
                log.warning("%s: commit %s has no build; building it", space.repo_id, head[:7])
                builds.request_build(self.platform, session, space, head, by="supervisor")

    # -- what no record owns ----------------------------------------------------------------------------------

    def remove_orphans(self) -> None:
        settings = self.settings
        with self.platform.db.session() as session:
            groups = orphans.stray_app_groups(settings, session)
            folders = orphans.stray_build_folders(settings, session)
        for pgid in groups:
            if self._overdue(("app group", pgid), False):
                log.warning("stopping process group %s: an app no space or deployment owns", pgid)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
        for pid in orphans.stray_fork_servers(settings):
            if self._overdue(("fork-server", pid), False):
                log.warning("stopping fork-server %s: it answers on no socket and serves no app", pid)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        for folder in folders:
            if self._overdue(("build folder", str(folder)), False):
                log.warning("removing %s: left by a build that no process runs", folder)
                shutil.rmtree(folder, ignore_errors=True)

    # -- what actually serves -------------------------------------------------------------------------------

    def _serves(self, space: Space) -> bool:
        if not space.handle:
            return False
        handle = Handle.from_json(space.handle)
        return backends.runtime_for(self.settings, handle.runtime).poll(handle) is None

    def _settle(self, space: Space, sha: str, error: str, error_stage: Stage) -> None:
        """After a failed build or start: RUNNING if the old revision still answers, else the error."""
        if self._serves(space):
            transition(space, Stage.RUNNING, f"revision {sha[:7]} failed: {error}", by="supervisor")
        else:
            transition(space, error_stage, error, by="supervisor")


def _lock_key(space_id: int) -> str:
    from spacehub_runner.jobs import space_lock_key  # (jobs imports much; the supervisor has it loaded anyway)

    return space_lock_key(space_id)
