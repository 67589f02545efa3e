"""`spacehub supervisor`: the long-lived owner of running spaces.

Every few seconds it compares SQL (what should run), the runtime (what runs) and the route table (what gets
traffic) and repairs the difference: re-adopts apps that survived a platform restart, restarts apps that died,
removes stale routes, re-enqueues builds whose job was lost, and copies apps' output into the run-log streams.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import select

from spacehub.context import Platform
from spacehub.logstream import LogWriter
from spacehub.queue import BUILDS, OPS, enqueue
from spacehub.routes import RedisRouteTable
from spacehub.stages import SERVING, SHOULD_RUN, Stage
from spacehub.store.models import Build, BuildStatus, Space, utcnow
from spacehub_runner import registry
from spacehub_runner.plugs import Handle

log = logging.getLogger("spacehub.supervisor")

MAX_QUICK_RESTARTS = 3
LOST_JOB_GRACE_S = 30.0


@dataclass
class _Pumped:
    lines: int = 0


class Supervisor:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.settings = platform.settings
        self.routes = RedisRouteTable(platform.redis)
        self._pumped: dict[str, _Pumped] = {}

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - one bad tick must not end supervision
                log.exception("supervisor tick failed")
            stop.wait(self.settings.reconcile_interval_s)

    def tick(self) -> None:
        self.reconcile_apps()
        self.reconcile_routes()
        self.recover_lost_builds()

    def reconcile_apps(self) -> None:
        with self.platform.db.session() as session:
            rows = list(session.scalars(select(Space).where(Space.repo_type == "space")))
            for space in rows:
                if space.handle is None:
                    if space.stage in SERVING:
                        self._restart(space, "the app is not running")
                    continue
                handle = Handle.from_json(space.handle)
                runtime = registry.runtime_for(self.settings, handle.runtime)
                code = runtime.poll(handle)
                if code is None:
                    self._pump_logs(space.id, handle)
                    continue
                self._pump_logs(space.id, handle)
                self._pumped.pop(self._handle_key(handle), None)
                space.handle = None
                self.routes.delete(space.label)
                if space.stage in SHOULD_RUN:
                    self._restart(space, f"the app exited with code {code}")

    def _restart(self, space: Space, reason: str) -> None:
        writer = LogWriter(self.platform.redis, space.id, "run", self.settings.log_stream_max)
        space.restarts += 1
        if space.restarts > MAX_QUICK_RESTARTS:
            space.stage, space.message = Stage.RUNTIME_ERROR, f"{reason}; gave up after {space.restarts - 1} restarts"
            writer(f"==> {space.message}")
            return
        writer(f"==> {reason}; restarting (attempt {space.restarts})")
        space.stage, space.message = Stage.APP_STARTING, f"restarting: {reason}"
        enqueue(self.platform.redis, OPS, "spacehub_runner.jobs.start", space.id, True)

    def reconcile_routes(self) -> None:
        with self.platform.db.session() as session:
            wanted = {}
            for space in session.scalars(select(Space).where(Space.handle.is_not(None))):
                if space.stage in SERVING and space.handle:
                    wanted[space.label] = Handle.from_json(space.handle).target
        current = self.routes.all()
        for label, target in wanted.items():
            if current.get(label) != target:
                self.routes.set(label, target)
        for label in current.keys() - wanted.keys():
            self.routes.delete(label)

    def recover_lost_builds(self) -> None:
        """SQL is the truth, Redis only dispatches: a queued build whose job vanished is enqueued again."""
        now = utcnow()
        with self.platform.db.session() as session:
            for build in session.scalars(select(Build).where(Build.status.in_(BuildStatus.ACTIVE))):
                if (now - build.created_at).total_seconds() < LOST_JOB_GRACE_S or not build.job_id:
                    continue
                status = self._job_status(build.job_id)
                if status in (None, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
                    if build.status == BuildStatus.RUNNING and status == JobStatus.FAILED:
                        build.status, build.error = BuildStatus.FAILED, "the build job failed (timeout or crash)"
                        space = session.get(Space, build.space_id)
                        if space is not None and space.desired_sha == build.sha and space.stage not in SERVING:
                            space.stage, space.message = Stage.BUILD_ERROR, build.error
                        continue
                    build.status = BuildStatus.QUEUED
                    build.created_at = now
                    build.job_id = enqueue(self.platform.redis, BUILDS, "spacehub_runner.jobs.build", build.id,
                                           False, timeout=self.settings.build_timeout_s + 60)

    def _job_status(self, job_id: str) -> JobStatus | None:
        try:
            return Job.fetch(job_id, connection=self.platform.redis).get_status()
        except NoSuchJobError:
            return None

    @staticmethod
    def _handle_key(handle: Handle) -> str:
        return f"{handle.runtime}:{handle.target}:{sorted(handle.data.items())}"

    def _pump_logs(self, space_id: int, handle: Handle) -> None:
        runtime = registry.runtime_for(self.settings, handle.runtime)
        state = self._pumped.setdefault(self._handle_key(handle), _Pumped())
        writer = LogWriter(self.platform.redis, space_id, "run", self.settings.log_stream_max)
        for index, line in enumerate(runtime.logs(handle)):
            if index >= state.lines:
                writer(line)
                state.lines = index + 1


def run_supervisor(platform: Platform) -> None:
    stop = threading.Event()
    Supervisor(platform).run(stop)
