"""`spacehub supervisor`: the long-lived owner of running spaces.

Every few seconds it compares SQL (what should run), the runtime (what runs) and the route table (what gets
traffic) and repairs the difference: re-adopts apps that survived a platform restart, restarts apps that died,
removes stale routes, heals builds and starts whose job was lost (`reconcile`), and copies apps' output into the
run-log streams (a log file from where the last copy stopped, emptied once over SPACEHUB_RUN_LOG_MAX_BYTES:
`runtimes.logfile`).

On the docker runtime it also reads the engine's own view (container labels): a running container of the
space's current revision that SQL lost track of is adopted rather than started twice, and every other container
of this platform (of a deleted space, of a superseded revision, a duplicate) is removed, as are the storage
volumes of deleted spaces. Spaces waiting for a GPU are started when devices free up.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select

from spacehub import routetable
from spacehub.context import Platform
from spacehub.logstream import LogWriter
from spacehub.sandbox.keeper import EgressKeeper
from spacehub.stages import SERVING, SHOULD_RUN, Stage
from spacehub.store.models import Build, BuildStatus, Space, utcnow
from spacehub.transitions import transition
from spacehub_runner import backends, backoff, deployments, forkserver_upkeep, gpus
from spacehub_runner.jobs import space_lock_key
from spacehub_runner.lifecycle import Lifecycle
from spacehub_runner.plugs import BuildPlan, Handle, Runtime, Storage, WiredRuntime
from spacehub_runner.reconcile import Healer
from spacehub_runner.runtimes import readiness
from spacehub_runner.runtimes.logfile import LogFileReader

log = logging.getLogger("spacehub.supervisor")


@dataclass
class _Pumped:
    """How far one app's output has been copied to its run-log stream."""

    lines: int = 0  # runtimes whose logs are read whole (docker): the lines copied so far
    reader: LogFileReader | None = None  # runtimes with a log file: where the last read stopped
    # Its last lines, for a crash message: the log file itself may have been emptied just before the crash.
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=readiness.TAIL_LINES))


class Supervisor:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.settings = platform.settings
        self._pumped: dict[str, _Pumped] = {}
        self.lifecycle = Lifecycle(platform)
        self.healer = Healer(platform)  # sleep, wake, drains, crash restarts, GC
        self.egress = EgressKeeper(self.settings)  # the kernel's egress rules, put back after a reboot or flush

    def run(self, stop: threading.Event) -> None:
        self.lifecycle.start(stop)
        while not stop.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - one bad tick must not end supervision
                log.exception("supervisor tick failed")
            stop.wait(self.settings.reconcile_interval_s)

    def tick(self) -> None:
        self.egress.tend()  # first: no container is started or adopted outside its box
        self.reconcile_containers()  # first: an adopted container must not be restarted as "not running"
        self.reconcile_apps()
        self.lifecycle.tick()
        self.reconcile_routes()
        self.healer.tick()  # builds and starts whose job is gone, stages no job stands behind, unbuilt commits
        gpus.start_waiting_spaces(self.settings, self.platform.db, self.platform.redis)
        forkserver_upkeep.tend(self.platform)  # a fork-server per environment in use, none for the others

    def reconcile_apps(self) -> None:
        idle: list[int] = []  # spaces whose GPUs are to be freed (after this session: one writer at a time)
        seen: set[str] = set()  # the apps whose output is being copied (the state of any other app is dropped)
        with self.platform.db.session() as session:
            rows = list(session.scalars(select(Space).where(Space.repo_type == "space")))
            for space in rows:
                if space.handle is None:
                    if space.stage in SERVING:
                        self._restart(space, "the app is not running")
                    continue
                handle = Handle.from_json(space.handle)
                runtime = backends.runtime_for(self.settings, handle.runtime)
                seen.add(self._handle_key(handle))
                code = runtime.poll(handle)
                self._pump_logs(space.id, handle, exited=code is not None)
                if code is None:
                    continue
                if not self._still_current(space.id, space.handle):
                    continue  # a job stopped or replaced it since this tick read SQL (a sleep, a redeploy)
                tail = list(self._pumped.pop(self._handle_key(handle), _Pumped()).recent)
                runtime.stop(handle)  # an exited container stays until removed; a process is only reaped
                deployments.ended(session, space.id, space.handle)
                space.handle, space.frozen = None, False  # (its route goes on commit: routetable.watch)
                if space.stage in SHOULD_RUN:
                    self._restart(space, f"the app exited with code {code}", tail)
                if space.stage not in SHOULD_RUN:
                    idle.append(space.id)
        for key in self._pumped.keys() - seen:
            del self._pumped[key]
        allocator = gpus.GpuAllocator(self.settings, self.platform.db)
        for space_id in idle:
            allocator.release(space_id)

    def _still_current(self, space_id: int, handle: dict[str, object] | None) -> bool:
        """Whether `handle` is still the space's app, with no job at work on the space: read afresh (another
        session, so not this tick's snapshot), since a stop or deploy may have finished after the tick read it."""
        if self.platform.redis.exists(space_lock_key(space_id)):
            return False
        with self.platform.db.session() as fresh:
            return bool(fresh.scalar(select(Space.handle).where(Space.id == space_id)) == handle)

    def _restart(self, space: Space, reason: str, log_tail: list[str] | None = None) -> None:
        """A crash: restart after the backoff delay (`lifecycle.restart_due` enqueues it), or give up."""
        backoff.record_crash(self.settings, space, reason, utcnow(), log_tail or [])
        writer = LogWriter(self.platform.redis, space.id, "run", self.settings.log_stream_max)
        writer(f"==> {space.message.splitlines()[0]}")

    # -- docker: the engine's view -----------------------------------------------------------------------

    def reconcile_containers(self) -> None:
        """Adopt what SQL lost track of, remove every other container of this platform (never the current one
        of a space, never one of a space some job is working on)."""
        plugged = backends.wired(self.settings, backends.runtime_name(self.settings))
        if plugged.managed is None:
            return
        runtime = plugged.runtime
        by_space: dict[int, list[Handle]] = {}
        for handle in plugged.managed.list_managed():  # newest first
            by_space.setdefault(int(handle.data["space_id"]), []).append(handle)
        for space_id, handles in by_space.items():
            # A deploy or stop holds this lock while it creates and removes containers: they are its business.
            # (SQL is read only after this check, so a job that finished meanwhile is seen finished.)
            if self.platform.redis.exists(space_lock_key(space_id)):
                continue
            keep = self._current_container(space_id, handles, runtime)
            # An old revision finishing its requests after a redeploy is stopped when drained (lifecycle).
            keep |= {str(h.data.get("container_id")) for h in self.lifecycle.draining(space_id)}
            for handle in handles:
                if handle.data["container_id"] not in keep:
                    log.info("removing container %s (space %s, revision %s): not the space's current one",
                             handle.data["name"], space_id, str(handle.data["revision"])[:12])
                    runtime.stop(handle)
        if plugged.storage is not None:
            self._remove_orphan_volumes(plugged.storage)

    def _current_container(self, space_id: int, handles: list[Handle], runtime: Runtime) -> set[str]:
        """Container ids to keep for this space; adopts a ready container of its revision when SQL has none."""
        with self.platform.db.session() as session:
            space = session.get(Space, space_id)
            if space is None or space.repo_type != "space":
                return set()  # a deleted space: everything goes
            ids = {h.data["container_id"] for h in handles}
            current = Handle.from_json(space.handle) if space.handle else None
            if current is not None:
                if current.runtime != runtime.name:
                    return set()  # served another way now (e.g. a static space): containers are leftovers
                if current.data.get("container_id") in ids:
                    return {current.data["container_id"]}
                # The container SQL names is gone; reconcile_apps restarts the space unless one is adopted here.
            if space.stage not in SHOULD_RUN or not space.desired_sha:
                return set()
            build_row = session.scalar(select(Build).where(Build.space_id == space_id,
                                                           Build.sha == space.desired_sha))
            plan = BuildPlan.from_json(build_row.plan) if build_row is not None and build_row.plan else None
            path = backends.READY_PATHS.get(plan.recipe, "/") if plan else "/"
            for handle in handles:
                if handle.data["revision"] != space.desired_sha or not handle.target:
                    continue
                if runtime.poll(handle) is not None:
                    continue
                status = readiness.probe(handle.target, path, timeout=2.0)
                if not readiness.answered(status):
                    if _age_s(handle) < self.settings.ready_timeout_s:
                        return {handle.data["container_id"]}  # maybe still starting: look again next tick
                    continue
                log.info("adopting container %s for %s (revision %s)", handle.data["name"], space.repo_id,
                         space.desired_sha[:12])
                space.handle, space.running_sha, space.frozen = handle.to_json(), space.desired_sha, False
                transition(space, Stage.RUNNING, "", by="supervisor")  # (routed on commit: routetable.watch)
                space.restarts = 0
                if build_row is not None and build_row.status in BuildStatus.ACTIVE:
                    build_row.status, build_row.finished_at = BuildStatus.SUCCEEDED, utcnow()
                deployments.adopted(session, space, build_row, handle.to_json(), _created(handle))
                return {handle.data["container_id"]}
            return set()

    def _remove_orphan_volumes(self, storage: Storage) -> None:
        volumes = storage.list_volumes()
        if not volumes:
            return
        with self.platform.db.session() as session:
            existing = set(session.scalars(select(Space.id).where(Space.id.in_(set(volumes.values())))))
        for name, space_id in volumes.items():
            if space_id not in existing:
                log.info("removing volume %s of deleted space %s", name, space_id)
                try:
                    storage.remove_volume(name)
                except Exception as exc:  # noqa: BLE001 - in use by a container on its way out: next tick
                    log.info("volume %s not removed yet: %s", name, exc)

    def reconcile_routes(self) -> None:
        routetable.sync_all(self.platform.redis, self.platform.db)

    @staticmethod
    def _handle_key(handle: Handle) -> str:
        return f"{handle.runtime}:{handle.target}:{sorted(handle.data.items())}"

    def _pump_logs(self, space_id: int, handle: Handle, *, exited: bool = False) -> None:
        """Copy the app's output written since the last copy to its run-log stream."""
        plugged = backends.wired(self.settings, handle.runtime)
        state = self._pumped.setdefault(self._handle_key(handle), _Pumped())
        writer = LogWriter(self.platform.redis, space_id, "run", self.settings.log_stream_max)
        for line in _new_lines(plugged, handle, state, self.settings.run_log_max_bytes, exited):
            writer(line)
            state.recent.append(line)


def _new_lines(plugged: WiredRuntime, handle: Handle, state: _Pumped, cap: int, exited: bool) -> Iterator[str]:
    """The app's lines not copied yet; each counts as copied once the next is asked for.

    A log file is read from where the last read stopped and emptied once over `cap` (so neither the file nor the
    cost of a read grows with the app's age); other runtimes' logs are read whole, skipping the lines copied.
    """
    if plugged.log_file is not None:
        if state.reader is None:
            state.reader = LogFileReader(plugged.log_file.log_path(handle))
        yield from state.reader.read(cap)
        if exited:
            yield from state.reader.rest()  # its unterminated last line: nobody will finish it now
        return
    for index, line in enumerate(plugged.runtime.logs(handle)):
        if index >= state.lines:
            yield line
            state.lines = index + 1


def _created(handle: Handle) -> datetime | None:
    """When the handle's container was created (docker's RFC 3339 time, as naive UTC), if it says."""
    created = str(handle.data.get("created") or "")
    try:
        when = datetime.fromisoformat(created[:26].rstrip("Z") if "." in created else created.rstrip("Z"))
    except ValueError:
        return None
    return when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo else when


def _age_s(handle: Handle) -> float:
    """Seconds since the handle's container was created (0 when unknown)."""
    when = _created(handle)
    return 0.0 if when is None else (datetime.now(UTC).replace(tzinfo=None) - when).total_seconds()


def run_supervisor(platform: Platform) -> None:
    stop = threading.Event()
    Supervisor(platform).run(stop)
