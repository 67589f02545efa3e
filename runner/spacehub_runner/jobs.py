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

from spacehub import activity, crypto
from spacehub import spaces as space_ops
from spacehub.context import Platform
from spacehub.errors import BuildFailed, NoAppFile, SpaceConfigError, StartFailed, Superseded
from spacehub.logstream import LogWriter
from spacehub.routes import RedisRouteTable
from spacehub.settings import load_settings
from spacehub.stages import SERVING, Stage, building_stage, starting_stage
from spacehub.store.models import Build, BuildStatus, Space, SpaceVariable, utcnow
from spacehub_runner import backoff, diskguard, drain, gpus, registry
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


def _finish_build(platform: Platform, build_id: int, status: str, error: str = "",
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
            space.stage, space.message = Stage.RUNNING, f"revision {build.sha[:7]} failed: {error}"
        else:
            space.stage, space.message = stage, error


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


def build(build_id: int, factory: bool = False) -> str:
    platform = _platform()
    with platform.db.session() as session:
        build_row = session.get(Build, build_id)
        space = session.get(Space, build_row.space_id) if build_row else None
        if build_row is None or space is None:
            return "gone"
        if build_row.status not in BuildStatus.ACTIVE or space.desired_sha != build_row.sha:
            build_row.status = BuildStatus.SUPERSEDED
            return "superseded"
        build_row.status, build_row.started_at = BuildStatus.RUNNING, utcnow()
        space.stage, space.message = building_stage(Stage(space.stage)), f"building {build_row.sha[:7]}"
        space_id, sha, sdk, repo = space.id, build_row.sha, space.sdk, space_ops.repo_key(space)
    log = LogWriter(platform.redis, space_id, "build", platform.settings.log_stream_max)
    log(f"==> Building {repo} at revision {sha[:12]}")
    refusal = diskguard.refusal(platform.settings, "build")
    if refusal is not None:
        log(f"==> {refusal}")
        _finish_build(platform, build_id, BuildStatus.FAILED, refusal, Stage.BUILD_ERROR)
        return "no-disk"
    workdir = platform.settings.data_dir / "builds" / str(build_id)
    shutil.rmtree(workdir, ignore_errors=True)
    try:
        platform.repos.checkout(repo, sha, workdir)
        try:
            recipe = plan_for(workdir, sdk, platform.settings)
        except NoAppFile as exc:
            log(f"==> {exc.message}")
            _finish_build(platform, build_id, BuildStatus.FAILED, exc.message, Stage.NO_APP_FILE)
            return "no-app-file"
        except SpaceConfigError as exc:
            log(f"==> Configuration error: {exc.message}")
            _finish_build(platform, build_id, BuildStatus.FAILED, exc.message, Stage.CONFIG_ERROR)
            return "config-error"
        for warning in recipe.warnings:
            log(f"warning: {warning}")
        with platform.db.session() as session:
            space = session.get(Space, space_id)
            if space is not None:
                space.card_data = recipe.config.card_data()
            build_row = session.get(Build, build_id)
            if build_row is not None:
                build_row.plan = recipe.plan.to_json()
        runtime_name = registry.runtime_name(platform.settings)
        builder = registry.builder_for(platform.settings, runtime_name)
        log(f"==> Recipe {recipe.plan.recipe}, runtime {runtime_name}" + (" (factory rebuild)" if factory else ""))
        variables, secrets = _build_inputs(platform, space_id)
        try:
            artifact = builder.build(recipe.plan, workdir, _CancellableLog(platform, build_id, log),
                                     BuildInputs(variables=variables, secrets=secrets, no_cache=factory))
        except Superseded:
            return "superseded"  # the builder killed its build on the way out; the newer one owns the log now
        except BuildFailed as exc:
            log(f"==> Build failed: {exc.message}")
            _finish_build(platform, build_id, BuildStatus.FAILED, exc.message, Stage.BUILD_ERROR)
            return "build-error"
        log(f"==> Build done: {artifact.kind} {artifact.key[:12]}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if not _is_current(platform, build_id):
        log("==> Superseded by a newer revision")
        return "superseded"
    with platform.db.session() as session:
        build_row = session.get(Build, build_id)
        if build_row is not None:
            build_row.artifact = artifact.to_json()
    return deploy(platform, space_id, build_id, log)


def deploy(platform: Platform, space_id: int, build_id: int, log: LogWriter) -> str:
    """Start the build's artifact beside whatever serves now; switch the route once it is ready."""
    settings = platform.settings
    with space_lock(platform, space_id, settings.ready_timeout_s + 60):
        with platform.db.session() as session:
            space = session.get(Space, space_id)
            build_row = session.get(Build, build_id)
            if space is None or build_row is None or build_row.artifact is None or build_row.plan is None:
                return "gone"
            if build_row.sha != space.desired_sha:
                return "superseded"
            space.stage = starting_stage(Stage(space.stage))
            space.message = f"starting {build_row.sha[:7]}"
            artifact = Artifact.from_json(build_row.artifact)
            plan = BuildPlan.from_json(build_row.plan)
            spec = RunSpec(space_id=space.id, space_key=space.repo_id, revision=build_row.sha, plan=plan,
                           env=app_env(settings, session, space), hardware=space.hardware,
                           log_dir=str(settings.logs_dir / str(space.id)), storage=space.storage)
            label = space.label
            old = Handle.from_json(space.handle) if space.handle else None
            runtime_name = artifact.extra.get("runtime") or registry.runtime_name(settings)
        runtime = registry.runtime_for(settings, runtime_name)
        allocator = gpus.GpuAllocator(settings, platform.db)
        claim = _claim_gpus(platform, allocator, build_id, spec, artifact, old, log)
        if isinstance(claim, str):
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
            registry.wait_ready(runtime, handle, settings.ready_timeout_s, plan)
        except StartFailed as exc:
            if handle is not None:
                runtime.stop(handle)
            allocator.release(space_id, lease=lease)
            log(f"==> App failed to start: {exc.message}")
            _finish_build(platform, build_id, BuildStatus.FAILED, f"start failed: {exc.message}",
                          Stage.RUNTIME_ERROR)
            return "runtime-error"
        with platform.db.session() as session:
            space = session.get(Space, space_id)
            build_row = session.get(Build, build_id)
            if space is None or build_row is None or space.desired_sha != build_row.sha or \
                    space.stage in (Stage.PAUSED, Stage.STOPPED, Stage.DELETING):
                runtime.stop(handle)
                allocator.release(space_id, lease=lease)
                return "superseded"
            space.handle, space.running_sha = handle.to_json(), build_row.sha
            space.stage, space.message = Stage.RUNNING, ""
            build_row.status, build_row.finished_at, build_row.error = BuildStatus.SUCCEEDED, utcnow(), ""
            activity.touch(platform.redis, space_id)  # a fresh app is idle from now, not since its last sleep
            RedisRouteTable(platform.redis).set(label, handle.target)
        log(f"==> Running at {settings.space_url(label)}")
        if old is not None and old != handle:
            if len(allocator.held(space_id)) > len(ids):
                # The old revision holds GPUs of its own: stopped now, so they are free for whoever waits.
                registry.runtime_for(settings, old.runtime).stop(old)
            else:
                # It finishes its open requests first; the supervisor stops it then (drain.py).
                drain.retire(platform, space_id, old)
        allocator.release(space_id, keep=lease)  # the old revision's devices, if it had any
        gpus.start_waiting_spaces(settings, platform.db, platform.redis)
        return "running"


def _claim_gpus(platform: Platform, allocator: gpus.GpuAllocator, build_id: int, spec: RunSpec,
                artifact: Artifact, old: Handle | None, log: LogWriter) -> str | tuple[str, list[str], Handle | None]:
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
        _finish_build(platform, build_id, BuildStatus.FAILED, error, Stage.RUNTIME_ERROR)
        return "runtime-error"
    if old is None or registry.runtime_for(settings, old.runtime).poll(old) is not None:
        allocator.release(spec.space_id)  # nothing of this space runs on what it holds
    ids = allocator.acquire(spec.space_id, lease, need)
    if ids is None and old is not None:
        log("==> No spare GPU to start beside the running revision: stopping it first")
        registry.runtime_for(settings, old.runtime).stop(old)
        with platform.db.session() as session:
            space = session.get(Space, spec.space_id)
            if space is not None:
                space.handle, space.stage = None, Stage.APP_STARTING
                RedisRouteTable(platform.redis).delete(space.label)
        allocator.release(spec.space_id)
        old = None
        ids = allocator.acquire(spec.space_id, lease, need)
    if ids is None:
        message = gpus.waiting_message(need, total)
        with platform.db.session() as session:
            space = session.get(Space, spec.space_id)
            build_row = session.get(Build, build_id)
            if build_row is not None:  # the build itself went fine; the start waits
                build_row.status, build_row.finished_at, build_row.error = BuildStatus.SUCCEEDED, utcnow(), ""
            if space is not None and space.handle is None:
                space.stage, space.message = Stage.APP_STARTING, message
        log(f"==> {message}")
        return "waiting-for-gpu"
    return lease, ids, old


def start(space_id: int, force: bool = False, crash_restart: bool = False) -> str:
    """(Re)start the space's current revision from its built artifact; rebuild if the artifact is gone.

    `crash_restart`: the supervisor restarting a crashed app; a failed start then counts as one more crash in a
    row (backoff.py) instead of ending in RUNTIME_ERROR at once.
    """
    platform = _platform()
    with platform.db.session() as session:
        space = session.get(Space, space_id)
        if space is None or not space.desired_sha:
            return "gone"
        build_row = session.scalar(select(Build).where(Build.space_id == space_id, Build.sha == space.desired_sha))
        if build_row is None or build_row.artifact is None or not registry.artifact_exists(
                platform.settings, Artifact.from_json(build_row.artifact)):
            space_ops.request_build(platform, session, space, space.desired_sha, build_row)
            return "rebuilding"
        if not force and space.stage in (Stage.STOPPED, Stage.PAUSED, Stage.DELETING):
            return "not-wanted"  # e.g. a GPU waiter stopped by its owner before a device freed up
        if not force and space.handle:
            handle = Handle.from_json(space.handle)
            if registry.runtime_for(platform.settings, handle.runtime).poll(handle) is None:
                return "already-running"
        build_row.status = BuildStatus.RUNNING
        build_id = build_row.id
    run_log = LogWriter(platform.redis, space_id, "run", platform.settings.log_stream_max)
    outcome = deploy(platform, space_id, build_id, run_log)
    if crash_restart and outcome == "runtime-error":
        with platform.db.session() as session:
            space = session.get(Space, space_id)
            if space is not None and space.stage == Stage.RUNTIME_ERROR:
                backoff.record_crash(platform.settings, space, space.message or "the app failed to start", utcnow())
                run_log(f"==> {space.message.splitlines()[0]}")
    return outcome


def stop(space_id: int) -> str:
    platform = _platform()
    with space_lock(platform, space_id, platform.settings.ready_timeout_s + 60):
        with platform.db.session() as session:
            space = session.get(Space, space_id)
            if space is None:
                return "gone"
            if space.handle:
                handle = Handle.from_json(space.handle)
                registry.runtime_for(platform.settings, handle.runtime).stop(handle)
            space.handle = None
            RedisRouteTable(platform.redis).delete(space.label)
        gpus.GpuAllocator(platform.settings, platform.db).release(space_id)
    gpus.start_waiting_spaces(platform.settings, platform.db, platform.redis)
    return "stopped"


def teardown(space_id: int, handle: dict[str, Any] | None) -> str:
    """After a delete: stop what ran, free its GPUs, remove its storage. The row, repo, route and logs are
    already gone."""
    platform = _platform()
    settings = platform.settings
    stopped = Handle.from_json(handle) if handle else None
    if stopped is not None:
        registry.runtime_for(settings, stopped.runtime).stop(stopped)
    gpus.GpuAllocator(settings, platform.db).release(space_id)  # (the rows also cascade with the space's)
    # The storage of the runtime it ran on, and of the one it would run on next (a space may be stopped).
    for name in {registry.runtime_name(settings)} | ({stopped.runtime} if stopped is not None else set()):
        storage = registry.wired(settings, name).storage
        if storage is None:
            continue
        try:
            storage.remove_volume(storage.volume_name(space_id))
        except Exception as exc:  # noqa: BLE001 - e.g. still in use by an app on its way out
            logger.warning("space %s: volume not removed yet (%s); the supervisor removes it later", space_id, exc)
    shutil.rmtree(settings.logs_dir / str(space_id), ignore_errors=True)
    gpus.start_waiting_spaces(settings, platform.db, platform.redis)
    return "deleted"
