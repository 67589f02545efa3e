"""The RQ jobs (the only functions the worker will run), by the names in `spacehub.queue.ALLOWED_JOBS`.

Each job opens the platform from settings (jobs run in other processes), re-reads SQL (the source of truth) and
gives up quietly when a newer push has superseded its work. Per-space work is serialised by a Redis lock.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from typing import Any

from redis.exceptions import LockError, ResponseError
from sqlalchemy import select

from spacehub import access, builds, crypto, lfs
from spacehub.context import Platform
from spacehub.edge import activity
from spacehub.errors import BuildFailed, NoAppFile, SpaceConfigError, StartFailed, Superseded
from spacehub.logstream import LogWriter
from spacehub.queue import BUILDS, enqueue
from spacehub.settings import load_settings
from spacehub.stages import SERVING, Stage, building_stage, starting_stage
from spacehub.store.models import (
    Build,
    BuildStatus,
    Deployment,
    DeployOutcome,
    JobOutcome,
    Space,
    SpaceVariable,
    utcnow,
)
from spacehub.transitions import transition
from spacehub_runner import backends, backoff, deployments, diskguard, drain, gpus, liveness
from spacehub_runner.appenv import app_env
from spacehub_runner.plugs import Artifact, BuildInputs, BuildPlan, Handle, RunSpec
from spacehub_runner.recipes import plan_for

logger = logging.getLogger("spacehub.jobs")


def _platform() -> Platform:
    return Platform.open(load_settings(), migrate_schema=False)


def space_lock_key(space_id: int) -> str:
    return f"spacehub:lock:space:{space_id}"


@contextmanager
def space_lock(platform: Platform, space_id: int, timeout: float) -> Iterator[None]:
    lock = platform.redis.lock(space_lock_key(space_id), timeout=timeout, blocking_timeout=timeout)
    if not lock.acquire():
        raise StartFailed(f"space {space_id} is busy with other work")
    try:
        yield
    finally:
        with suppress(LockError):  # an expired lock is fine to lose
            lock.release()


def _is_current(platform: Platform, build_id: int) -> bool:
    with platform.db.session() as session:
        build = session.get(Build, build_id)
        space = session.get(Space, build.space_id) if build else None
        return bool(build and space and build.status == BuildStatus.RUNNING and space.desired_sha == build.sha)


def _finish_build(platform: Platform, build_id: int, status: BuildStatus, error: str = "",
                  stage: Stage | None = None) -> None:
    with platform.db.session() as session:
        build = session.get(Build, build_id)
        if build is None:
            return
        build.status, build.error, build.finished_at = status, error, utcnow()
        space = session.get(Space, build.space_id)
        if space is None or stage is None or space.desired_sha != build.sha:
            return
        if space.stage in SERVING and space.handle:
            # The old revision keeps serving; the failure is the build's, shown with it.
            transition(space, Stage.RUNNING, f"revision {build.sha[:7]} failed: {error}", by="worker")
        else:
            transition(space, stage, error, by="worker")


class _CancellableLog:
    """The build log, which also ends a build a newer push superseded: every SPACEHUB_BUILD_CANCEL_CHECK_S it
    re-reads SQL and raises Superseded; builders kill what they run when their log raises.

    Until then its lines must not land in the newer build's log: a newer push deletes the log stream
    (`request_build`), and these writes never create it again (XADD NOMKSTREAM).
    """

    def __init__(self, platform: Platform, build_id: int, log: LogWriter) -> None:
        self.platform, self.build_id, self.log = platform, build_id, log
        self.checked = time.monotonic()

    def __call__(self, line: str) -> None:
        now = time.monotonic()
        if now - self.checked >= self.platform.settings.build_cancel_check_s:
            self.checked = now
            if not _is_current(self.platform, self.build_id):
                raise Superseded("a newer revision superseded this build")
        try:
            self.log.conn.xadd(self.log.key, {"line": line.rstrip("\n")}, maxlen=self.log.max_lines,
                               approximate=True, nomkstream=True)
        except ResponseError:  # a redis before 6.2: no NOMKSTREAM
            self.log(line)


def _build_inputs(platform: Platform, space_id: int) -> tuple[dict[str, str], dict[str, str]]:
    """The space's variables and secrets, for a Docker space's build (build args and BuildKit secrets)."""
    with platform.db.session() as session:
        rows = session.scalars(select(SpaceVariable).where(SpaceVariable.space_id == space_id)).all()
        variables = {row.key: row.value for row in rows if not row.secret}
        secrets = crypto.revealed(platform.settings, [row for row in rows if row.secret])
    return variables, secrets


def build(build_id: int, factory: bool = False) -> JobOutcome:
    """Check out, plan and build one revision: the job ends at its artifact, and queues its deploy."""
    platform = _platform()
    with platform.db.session() as session:
        build_row = session.get(Build, build_id)
        space = session.get(Space, build_row.space_id) if build_row else None
        if build_row is None or space is None:
            return JobOutcome.GONE
        if build_row.status not in BuildStatus.ACTIVE or space.desired_sha != build_row.sha:
            build_row.status = BuildStatus.SUPERSEDED
            return JobOutcome.SUPERSEDED
        build_row.status, build_row.started_at = BuildStatus.RUNNING, utcnow()
        build_row.runner, build_row.attempts = liveness.me(), (build_row.attempts or 0) + 1
        transition(space, building_stage(Stage(space.stage)), f"building {build_row.sha[:7]}", by="build")
        space_id, sha, sdk, repo = space.id, build_row.sha, space.sdk, access.repo_key(space)
    log = LogWriter(platform.redis, space_id, "build", platform.settings.log_stream_max)
    log(f"==> Building {repo} at revision {sha[:12]}")
    refusal = diskguard.refusal(platform.settings, "build")
    if refusal is not None:
        log(f"==> {refusal}")
        _finish_build(platform, build_id, BuildStatus.FAILED, refusal, Stage.BUILD_ERROR)
        return JobOutcome.NO_DISK
    workdir = platform.settings.data_dir / "builds" / str(build_id)
    shutil.rmtree(workdir, ignore_errors=True)
    try:
        platform.repos.checkout(repo, sha, workdir)
        if lfs.materialize(platform, workdir):  # the app reads its LFS files' bytes, not their pointers
            log("==> Large files (LFS) placed in the checkout")
        try:
            recipe = plan_for(workdir, sdk, platform.settings)
        except NoAppFile as exc:
            log(f"==> {exc.message}")
            _finish_build(platform, build_id, BuildStatus.FAILED, exc.message, Stage.NO_APP_FILE)
            return JobOutcome.NO_APP_FILE
        except SpaceConfigError as exc:
            log(f"==> Configuration error: {exc.message}")
            _finish_build(platform, build_id, BuildStatus.FAILED, exc.message, Stage.CONFIG_ERROR)
            return JobOutcome.CONFIG_ERROR
        for warning in recipe.warnings:
            log(f"warning: {warning}")
        with platform.db.session() as session:
            space = session.get(Space, space_id)
            if space is not None:
                space.card_data = recipe.config.card_data()
            build_row = session.get(Build, build_id)
            if build_row is not None:
                build_row.plan = recipe.plan.to_json()
        runtime_name = backends.runtime_name(platform.settings)
        builder = backends.builder_for(platform.settings, runtime_name)
        log(f"==> Recipe {recipe.plan.recipe}, runtime {runtime_name}" + (" (factory rebuild)" if factory else ""))
        variables, secrets = _build_inputs(platform, space_id)
        try:
            artifact = builder.build(recipe.plan, workdir, _CancellableLog(platform, build_id, log),
                                     BuildInputs(variables=variables, secrets=secrets, no_cache=factory))
        except Superseded:
            return JobOutcome.SUPERSEDED  # the builder killed its build on the way out; the newer one owns the log now
        except BuildFailed as exc:
            log(f"==> Build failed: {exc.message}")
            _finish_build(platform, build_id, BuildStatus.FAILED, exc.message, Stage.BUILD_ERROR)
            return JobOutcome.BUILD_ERROR
        log(f"==> Build done: {artifact.kind} {artifact.key[:12]}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if not _is_current(platform, build_id):
        log("==> Superseded by a newer revision")
        return JobOutcome.SUPERSEDED
    with platform.db.session() as session:
        build_row = session.get(Build, build_id)
        space = session.get(Space, space_id)
        if build_row is None or space is None:
            return JobOutcome.GONE
        build_row.artifact, build_row.status = artifact.to_json(), BuildStatus.SUCCEEDED
        build_row.finished_at, build_row.error = utcnow(), ""
        transition(space, starting_stage(Stage(space.stage)), f"built {sha[:7]}; queued to start", by="build")
    # Ahead of other builds: the revision is ready to go, and a start is short next to a build.
    enqueue(platform.redis, BUILDS, "spacehub_runner.jobs.deploy", build_id, at_front=True,
            timeout=int(platform.settings.ready_timeout_s) + 120)
    return JobOutcome.BUILT


def deploy(build_id: int) -> JobOutcome:
    """Start a built revision (the job a build queues when its artifact is done)."""
    platform = _platform()
    with platform.db.session() as session:
        build_row = session.get(Build, build_id)
        space = session.get(Space, build_row.space_id) if build_row is not None else None
        if build_row is None or space is None:
            return JobOutcome.GONE
        space_id = space.id
        # Started since this build finished (the reconciler's start when this job seemed lost): done already. A
        # start from before it (a factory rebuild of the revision that runs) does not count.
        started = session.scalar(select(Deployment.id).where(
            Deployment.build_id == build_id, Deployment.outcome.in_(deployments.LIVE),
            Deployment.started_at >= (build_row.finished_at or utcnow())))
        if started is not None:
            return JobOutcome.ALREADY_RUNNING
    log = LogWriter(platform.redis, space_id, "build", platform.settings.log_stream_max)
    return _deploy(platform, space_id, build_id, log)


def _deploy(platform: Platform, space_id: int, build_id: int, log: LogWriter) -> JobOutcome:
    """Start the build's artifact beside whatever serves now; switch the route once it is ready. Each try is a
    Deployment row (deployments.py); the build row is not this step's business."""
    settings = platform.settings
    with space_lock(platform, space_id, settings.ready_timeout_s + 60):
        with platform.db.session() as session:
            space = session.get(Space, space_id)
            build_row = session.get(Build, build_id)
            if space is None or build_row is None or build_row.artifact is None or build_row.plan is None:
                return JobOutcome.GONE
            if build_row.sha != space.desired_sha:
                return JobOutcome.SUPERSEDED
            if space.stage in (Stage.PAUSED, Stage.STOPPED, Stage.DELETING):
                return JobOutcome.NOT_WANTED  # stopped by its owner while this start waited in the queue
            transition(space, starting_stage(Stage(space.stage)), f"starting {build_row.sha[:7]}", by="deploy")
            deployment_id = deployments.open_deployment(session, space, build_row).id
            artifact = Artifact.from_json(build_row.artifact)
            plan = BuildPlan.from_json(build_row.plan)
            spec = RunSpec(space_id=space.id, space_key=space.repo_id, revision=build_row.sha, plan=plan,
                           env=app_env(settings, session, space), hardware=space.hardware,
                           log_dir=str(settings.logs_dir / str(space.id)), storage=space.storage)
            label = space.label
            old = Handle.from_json(space.handle) if space.handle else None
            runtime_name = artifact.extra.get("runtime") or backends.runtime_name(settings)
        runtime = backends.runtime_for(settings, runtime_name)
        allocator = gpus.GpuAllocator(settings, platform.db)
        claim = _claim_gpus(platform, allocator, deployment_id, spec, artifact, old, log)
        if isinstance(claim, JobOutcome):
            return claim
        lease, ids, old = claim
        spec = replace(spec, gpu_ids=tuple(ids))
        log(f"==> Starting revision {spec.revision[:12]} ({runtime.name} runtime"
            + (f", GPU {','.join(ids)})" if ids else ")"))
        handle: Handle | None = None
        try:
            refusal = diskguard.refusal(settings, "start")
            if refusal is not None:
                raise StartFailed(refusal)
            handle = runtime.start(spec, artifact)
            with platform.db.session() as session:
                deployments.started(session, deployment_id, handle.to_json())
            backends.wait_ready(runtime, handle, settings.ready_timeout_s, plan)
        except StartFailed as exc:
            if handle is not None:
                runtime.stop(handle)
            allocator.release(space_id, lease=lease)
            log(f"==> App failed to start: {exc.message}")
            _fail_start(platform, deployment_id, f"start failed: {exc.message}")
            return JobOutcome.RUNTIME_ERROR
        # The old revision drains (drain.py) unless it holds GPUs of its own: then it is stopped at once, so they
        # are free for whoever waits. Retired in the same commit as the switch, so the proxy never sees the new
        # route without knowing the old app still serves the clients pinned to it (spacehub.edge.gateway).
        retire_old = old is not None and old != handle and len(allocator.held(space_id)) <= len(ids)
        with platform.db.session() as session:
            space = session.get(Space, space_id)
            build_row = session.get(Build, build_id)
            if space is None or build_row is None or space.desired_sha != build_row.sha or \
                    space.stage in (Stage.PAUSED, Stage.STOPPED, Stage.DELETING):
                runtime.stop(handle)
                allocator.release(space_id, lease=lease)
                deployments.close(session, deployment_id, DeployOutcome.SUPERSEDED)
                return JobOutcome.SUPERSEDED
            space.handle, space.running_sha, space.frozen = handle.to_json(), build_row.sha, False
            transition(space, Stage.RUNNING, "", by="deploy")  # the route follows on commit (routetable.watch)
            deployments.serving(session, deployment_id, handle.to_json())
            if retire_old and old is not None:
                drain.retire_in(session, space_id, old)  # it finishes its open requests; the supervisor stops it
            activity.touch(platform.redis, space_id)  # a fresh app is idle from now, not since its last sleep
        log(f"==> Running at {settings.space_url(label)}")
        if old is not None and old != handle and not retire_old:
            backends.runtime_for(settings, old.runtime).stop(old)
        allocator.release(space_id, keep=lease)  # the old revision's devices, if it had any
        gpus.start_waiting_spaces(settings, platform.db, platform.redis)
        return JobOutcome.RUNNING


def _fail_start(platform: Platform, deployment_id: int, error: str) -> None:
    """A start that did not become ready: recorded on its deployment; the space shows it, unless an older
    revision still serves (then that one keeps serving, and the message says what failed)."""
    with platform.db.session() as session:
        deployments.close(session, deployment_id, DeployOutcome.FAILED, error)
        deployment = session.get(Deployment, deployment_id)
        space = session.get(Space, deployment.space_id) if deployment is not None else None
        if space is None or deployment is None or space.desired_sha != deployment.revision:
            return
        if space.stage in SERVING and space.handle:
            transition(space, Stage.RUNNING, f"revision {deployment.revision[:7]} failed: {error}", by="deploy")
        else:
            transition(space, Stage.RUNTIME_ERROR, error, by="deploy")


def _claim_gpus(platform: Platform, allocator: gpus.GpuAllocator, deployment_id: int, spec: RunSpec,
                artifact: Artifact, old: Handle | None,
                log: LogWriter) -> JobOutcome | tuple[str, list[str], Handle | None]:
    """Hold the devices the space's flavor asks for: (lease, device ids, the old handle if it still runs), or
    the job's outcome when it cannot start now ("waiting-for-gpu", "runtime-error").

    The new revision starts beside the old one when a spare device exists; else the old one is stopped first.
    """
    settings = platform.settings
    need = 0 if artifact.kind == "static" else gpus.gpus_needed(settings, spec.hardware)
    lease = gpus.new_lease(spec.revision)
    if need == 0:
        return lease, [], old
    total = len(allocator.devices)
    if need > total:
        error = f"hardware {spec.hardware} needs {need} GPU(s); this machine has {total} (SPACEHUB_GPUS)"
        log(f"==> {error}")
        _fail_start(platform, deployment_id, error)
        return JobOutcome.RUNTIME_ERROR
    if old is None or backends.runtime_for(settings, old.runtime).poll(old) is not None:
        allocator.release(spec.space_id)  # nothing of this space runs on what it holds
    ids = allocator.acquire(spec.space_id, lease, need)
    if ids is None and old is not None:
        log("==> No spare GPU to start beside the running revision: stopping it first")
        backends.runtime_for(settings, old.runtime).stop(old)
        with platform.db.session() as session:
            space = session.get(Space, spec.space_id)
            if space is not None:
                space.handle, space.frozen = None, False
                transition(space, Stage.APP_STARTING, "stopped the running revision to free its GPU", by="deploy")
        allocator.release(spec.space_id)
        old = None
        ids = allocator.acquire(spec.space_id, lease, need)
    if ids is None:
        message = gpus.waiting_message(need, total)
        with platform.db.session() as session:
            space = session.get(Space, spec.space_id)
            # This try ends here; a start is queued again when a device frees up (gpus.start_waiting_spaces).
            deployments.close(session, deployment_id, DeployOutcome.SUPERSEDED, message)
            if space is not None and space.handle is None:
                transition(space, Stage.APP_STARTING, message, by="deploy")
        log(f"==> {message}")
        return JobOutcome.WAITING_FOR_GPU
    return lease, ids, old


def start(space_id: int, force: bool = False, crash_restart: bool = False) -> JobOutcome:
    """(Re)start the space's current revision from its built artifact; rebuild if the artifact is gone.

    `crash_restart`: the supervisor restarting a crashed app; a failed start then counts as one more crash in a
    row (backoff.py) instead of ending in RUNTIME_ERROR at once.
    """
    platform = _platform()
    with platform.db.session() as session:
        space = session.get(Space, space_id)
        if space is None or not space.desired_sha:
            return JobOutcome.GONE
        build_row = session.scalar(select(Build).where(Build.space_id == space_id, Build.sha == space.desired_sha))
        if build_row is None or build_row.artifact is None or not backends.artifact_exists(
                platform.settings, Artifact.from_json(build_row.artifact)):
            builds.request_build(platform, session, space, space.desired_sha, build_row, by="start")
            return JobOutcome.REBUILDING
        if not force and space.stage in (Stage.STOPPED, Stage.PAUSED, Stage.DELETING):
            return JobOutcome.NOT_WANTED  # e.g. a GPU waiter stopped by its owner before a device freed up
        if not force and space.handle:
            handle = Handle.from_json(space.handle)
            if backends.runtime_for(platform.settings, handle.runtime).poll(handle) is None:
                return JobOutcome.ALREADY_RUNNING
        build_id = build_row.id  # (a start reads its build; it never changes it)
    run_log = LogWriter(platform.redis, space_id, "run", platform.settings.log_stream_max)
    outcome = _deploy(platform, space_id, build_id, run_log)
    if crash_restart and outcome == JobOutcome.RUNTIME_ERROR:
        with platform.db.session() as session:
            space = session.get(Space, space_id)
            if space is not None and space.stage == Stage.RUNTIME_ERROR:
                backoff.record_crash(platform.settings, space, space.message or "the app failed to start", utcnow(),
                                     by="start")
                run_log(f"==> {space.message.splitlines()[0]}")
    return outcome


def stop(space_id: int) -> JobOutcome:
    platform = _platform()
    with space_lock(platform, space_id, platform.settings.ready_timeout_s + 60):
        with platform.db.session() as session:
            space = session.get(Space, space_id)
            if space is None:
                return JobOutcome.GONE
            if space.handle:
                handle = Handle.from_json(space.handle)
                backends.runtime_for(platform.settings, handle.runtime).stop(handle)
                deployments.ended(session, space_id, space.handle)
            space.handle, space.frozen = None, False  # (its route goes on commit: routetable.watch)
        gpus.GpuAllocator(platform.settings, platform.db).release(space_id)
    gpus.start_waiting_spaces(platform.settings, platform.db, platform.redis)
    return JobOutcome.STOPPED


def teardown(space_id: int, handle: dict[str, Any] | None) -> JobOutcome:
    """After a delete: stop what ran, free its GPUs, remove its storage. The row, repo, route and logs are
    already gone."""
    platform = _platform()
    settings = platform.settings
    stopped = Handle.from_json(handle) if handle else None
    if stopped is not None:
        backends.runtime_for(settings, stopped.runtime).stop(stopped)
    gpus.GpuAllocator(settings, platform.db).release(space_id)  # (the rows also cascade with the space's)
    # The storage of the runtime it ran on, and of the one it would run on next (a space may be stopped).
    for name in {backends.runtime_name(settings)} | ({stopped.runtime} if stopped is not None else set()):
        storage = backends.wired(settings, name).storage
        if storage is None:
            continue
        try:
            storage.remove_volume(storage.volume_name(space_id))
        except Exception as exc:  # noqa: BLE001 - e.g. still in use by an app on its way out
            logger.warning("space %s: volume not removed yet (%s); the supervisor removes it later", space_id, exc)
    shutil.rmtree(settings.logs_dir / str(space_id), ignore_errors=True)
    gpus.start_waiting_spaces(settings, platform.db, platform.redis)
    return JobOutcome.DELETED
