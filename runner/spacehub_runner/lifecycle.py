"""The supervisor's part in a space's life after it is running: sleep, wake, drains, crash restarts and GC.

Two tiers of sleep, from the activity the proxy publishes (`spacehub.edge.activity`):

  - after SPACEHUB_FREEZE_AFTER_S without requests a space is frozen (`Freezable.freeze`: SIGSTOP of its process
    group, or docker pause): no CPU, memory kept, stage still RUNNING. Its route is taken away first, so no
    request can reach a frozen app: a request finds no route and asks to wake it (`spacehub.edge.wake`). Freezing
    takes two ticks: the route goes, then, once a flush interval has shown no request slipped through on the old
    route, the app is stopped; a request meanwhile cancels it.
  - after its sleep time (the space's `sleep_time`, else SPACEHUB_DEFAULT_SLEEP_TIME_S; -1: never) it is stopped
    (the `stop` job) and its memory, port and GPUs are freed: stage SLEEPING.

Waking: the gateway publishes the space's id on `spacehub.edge.wake.WAKE_CHANNEL`; `wake` (on a thread of its own,
so a tick in progress does not delay it) thaws a frozen app and puts its route back, or moves a SLEEPING space to
APP_STARTING and enqueues one start. The SQL transition `SLEEPING -> APP_STARTING` is the guard that makes any
number of concurrent asks cause a single start. PAUSED and STOPPED spaces are never woken.

Also here: stopping retired apps once drained (`drain`), enqueuing crash restarts when their backoff delay is
over (`backoff`), and the periodic garbage collection (`gc`).
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import select

from spacehub.context import Platform
from spacehub.edge import activity
from spacehub.edge.wake import WAKE_CHANNEL
from spacehub.logstream import LogWriter
from spacehub.queue import OPS, enqueue
from spacehub.stages import SERVING, Stage
from spacehub.store.models import RetiredApp, Space, utcnow
from spacehub.transitions import transition, transition_if
from spacehub_runner import backends, backoff, deployments, drain, gc
from spacehub_runner.plugs import Handle

log = logging.getLogger("spacehub.lifecycle")


class Lifecycle:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.settings = platform.settings
        # Held by a wake and by the part of a tick that decides about freezing, so a wake never races a freeze.
        self.lock = threading.RLock()
        # Space id -> (route removed at, app target): the space's `frozen` flag is set (so it has no route) and
        # the app is frozen once no request has slipped through on the old route. A space whose flag is set and
        # that is not in here is frozen.
        self.pending_freeze: dict[int, tuple[float, str]] = {}
        self._frozen_known = False  # after a restart, apps flagged frozen are made so once (an interrupted freeze)
        self._last_gc = time.monotonic()  # the first collection waits a full interval after a start
        self._listener: threading.Thread | None = None

    # -- the supervisor's hooks ---------------------------------------------------------------------------

    def start(self, stop: threading.Event) -> None:
        """Start answering wake requests (on a thread of its own)."""
        self._listener = threading.Thread(target=self._listen, args=(stop,), name="wake-listener", daemon=True)
        self._listener.start()

    def tick(self) -> None:
        with self.lock:
            self.reap()
        self.restart_due()
        self.finish_drains()
        if time.monotonic() - self._last_gc >= self.settings.gc_interval_s:
            self._last_gc = time.monotonic()
            try:
                gc.collect(self.platform)
            except Exception:  # noqa: BLE001 - a failed collection must not stop supervision
                log.exception("garbage collection failed")

    def draining(self, space_id: int) -> list[Handle]:
        """Retired apps of the space still finishing their requests (the container reconciler keeps them)."""
        with self.platform.db.session() as session:
            rows = session.scalars(select(RetiredApp).where(RetiredApp.space_id == space_id))
            return [Handle.from_json(row.handle) for row in rows]

    # -- sleep: freeze, then stop -----------------------------------------------------------------------

    def reap(self) -> None:
        now = time.time()
        flush = self.settings.activity_flush_s
        seen = activity.read_all(self.platform.redis)
        with self.platform.db.session() as session:
            spaces = list(session.scalars(select(Space).where(Space.repo_type == "space",
                                                              Space.handle.is_not(None))))
            if not self._frozen_known:
                self._find_frozen(spaces)
            for space in spaces:
                if space.stage != Stage.RUNNING or space.handle is None:
                    if self.pending_freeze.pop(space.id, None) is not None:
                        space.frozen = False  # not frozen after all: it keeps (or gets back) its route
                    continue
                handle = Handle.from_json(space.handle)
                record = seen.get(space.id)
                if record is None:
                    activity.touch(self.platform.redis, space.id, now)  # first sight: idle from now on
                    continue
                idle = record.idle_for(now, flush)
                sleep_after = space.sleep_time if space.sleep_time is not None else self.settings.default_sleep_time_s
                if sleep_after > 0 and idle >= sleep_after:
                    self._put_to_sleep(space, idle)
                    session.commit()  # before the stop is enqueued: a wake must see SLEEPING
                    enqueue(self.platform.redis, OPS, "spacehub_runner.jobs.stop", space.id)
                    continue
                self._freeze_step(space, handle, record, idle, now)

    def _freeze_step(self, space: Space, handle: Handle, record: activity.Activity, idle: float,
                     now: float) -> None:
        freezer = backends.wired(self.settings, handle.runtime).freezer
        after = self.settings.freeze_after_s
        pending = self.pending_freeze.get(space.id)
        if pending is not None and pending[1] != handle.target:
            pending = None  # a redeploy since
            self.pending_freeze.pop(space.id)
        if after <= 0 or freezer is None or (space.frozen and pending is None):
            return
        if pending is None:
            if idle >= after:
                # First the route goes (on commit): from now on a request asks for a wake instead of reaching it.
                self.pending_freeze[space.id] = (now, handle.target)
                space.frozen = True
            return
        since = pending[0]
        flush = self.settings.activity_flush_s
        if record.busy(now, flush) or record.last_active >= since:
            # A request came through on the old route just before it went: cancel.
            self.pending_freeze.pop(space.id)
            space.frozen = False
            return
        if now - since >= 2 * flush:
            freezer.freeze(handle)
            self.pending_freeze.pop(space.id)
            log.info("froze %s after %.0fs without requests", space.repo_id, idle)

    def _put_to_sleep(self, space: Space, idle: float) -> None:
        self.pending_freeze.pop(space.id, None)
        space.frozen = False  # (stopped, not frozen: the stop job ends it, and a request starts it again)
        transition(space, Stage.SLEEPING, f"sleeping after {idle:.0f}s without requests", by="supervisor")
        LogWriter(self.platform.redis, space.id, "run", self.settings.log_stream_max)(f"==> {space.message}")
        log.info("%s is %s", space.repo_id, space.message)

    def _find_frozen(self, spaces: list[Space]) -> None:
        """After a (supervisor) restart: a freeze that was under way (flag set, app maybe still running) is
        finished, so that every app flagged frozen is frozen. (Freezing is idempotent.)"""
        self._frozen_known = True
        for space in spaces:
            if space.handle is None or space.stage not in SERVING or not space.frozen:
                continue
            handle = Handle.from_json(space.handle)
            freezer = backends.wired(self.settings, handle.runtime).freezer
            try:
                if freezer is not None:
                    freezer.freeze(handle)
            except Exception:  # noqa: BLE001 - e.g. the engine is away: a request thaws it anyway
                log.exception("could not freeze %s", space.repo_id)

    # -- wake -----------------------------------------------------------------------------------------

    def wake(self, space_id: int) -> str:
        """Answer one wake request: "thawed", "starting", or why nothing was done."""
        with self.lock, self.platform.db.session() as session:
            space = session.get(Space, space_id)
            if space is None:
                return "gone"
            if space.stage in SERVING and space.handle:
                handle = Handle.from_json(space.handle)
                freezer = backends.wired(self.settings, handle.runtime).freezer
                if freezer is not None:
                    freezer.thaw(handle)  # idempotent; cheaper than asking first
                self.pending_freeze.pop(space.id, None)
                activity.touch(self.platform.redis, space.id)
                space.frozen = False
                session.commit()  # the route comes back now (routetable.watch), while the lock is held
                return "thawed"
            if space.stage == Stage.SLEEPING:
                moved = transition_if(session, space_id, Stage.SLEEPING, Stage.APP_STARTING,
                                      "waking up: a request arrived", by="wake")
                session.commit()
                if not moved:
                    return "already-waking"
                LogWriter(self.platform.redis, space_id, "run", self.settings.log_stream_max)(
                    "==> Waking up: a request arrived")
                # force: start even if the stop of its sleep has not removed the old app yet (it is retired).
                enqueue(self.platform.redis, OPS, "spacehub_runner.jobs.start", space_id, True)
                return "starting"
            return f"not-wakeable ({space.stage})"

    def _listen(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                pubsub = self.platform.redis.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(WAKE_CHANNEL)
                try:
                    while not stop.is_set():
                        message = pubsub.get_message(timeout=1.0)
                        if message is None or message.get("type") != "message":
                            continue
                        try:
                            space_id = int(message["data"])
                        except (TypeError, ValueError):
                            continue
                        try:
                            log.debug("wake %s: %s", space_id, self.wake(space_id))
                        except Exception:  # noqa: BLE001 - one failed wake must not end the listener
                            log.exception("waking space %s failed", space_id)
                finally:
                    pubsub.close()
            except Exception:  # noqa: BLE001 - Redis away: subscribe again
                log.exception("wake listener failed; subscribing again")
                stop.wait(1.0)

    # -- drains and crash restarts --------------------------------------------------------------------

    def finish_drains(self) -> None:
        """Stop retired apps whose requests have all ended (or whose drain time is up)."""
        with self.platform.db.session() as session:
            rows = list(session.scalars(select(RetiredApp)))
        if not rows:
            return
        now = time.time()
        flush = self.settings.activity_flush_s
        seen = activity.read_all(self.platform.redis)
        unpinned = drain.unpinned(self.platform.redis)
        for row in rows:
            retired = drain.epoch(row.retired_at)
            since = unpinned.get(row.id)
            if since is None:
                # First the clients pinned to this revision (spacehub.edge.gateway) are sent to the new one: requests
                # reach the old app until then, so its drain is counted again from that moment.
                timed_out = now - retired >= self.settings.drain_timeout_s
                if timed_out or drain.is_drained(seen.get(row.space_id), retired, now, flush):
                    drain.unpin(self.platform, row.id, row.space_id, now)
                continue
            timed_out = now - since >= self.settings.drain_timeout_s
            if not timed_out and not drain.is_drained(seen.get(row.space_id), since, now, flush):
                continue
            handle = Handle.from_json(row.handle)
            with self.platform.db.session() as session:
                space = session.get(Space, row.space_id)
                current = space.handle if space is not None else None
            if current != row.handle:  # (never stop what serves now)
                backends.runtime_for(self.settings, handle.runtime).stop(handle)
                log.info("stopped the old app of space %s (%s)", row.space_id,
                         "drain timeout" if timed_out else "drained")
            with self.platform.db.session() as session:
                if current != row.handle:
                    deployments.ended(session, row.space_id, row.handle)
                stale = session.get(RetiredApp, row.id)
                if stale is not None:
                    session.delete(stale)
            drain.forget_unpin(self.platform.redis, row.id)

    def restart_due(self) -> None:
        """Enqueue the crash restarts whose backoff delay is over."""
        now = utcnow()
        due: list[int] = []
        with self.platform.db.session() as session:
            for space in session.scalars(select(Space).where(Space.restart_at.is_not(None))):
                if backoff.is_due(space, now):
                    space.message = f"restarting after a crash (restart {space.restarts} of " \
                                    f"{self.settings.max_restarts})"
                    due.append(space.id)
                    space.restart_at = None
                elif space.stage != Stage.APP_STARTING or space.handle is not None:
                    space.restart_at = None  # started or stopped some other way meanwhile
        for space_id in due:
            enqueue(self.platform.redis, OPS, "spacehub_runner.jobs.start", space_id, True, True)
