"""Waking a space on request: what the gateway does with a request to a space that has no route right now.

A space without a route whose stage says it should serve is frozen (or being repaired); a `SLEEPING` one was
stopped after its sleep time; an `APP_STARTING` one is on its way. For each, the gateway asks the worker side to
wake it and holds the request until the route is back:

  - the ask is a Redis PUBLISH of the space id on `WAKE_CHANNEL`, answered by the supervisor
    (`spacehub_runner.lifecycle`): it thaws a frozen app (SIGCONT / docker unpause) and puts its route back
    within milliseconds, or moves a sleeping space to `APP_STARTING` and enqueues one start (a guarded SQL
    transition, so any number of concurrent first requests cause one start). The control plane never signals
    an app itself: it would need to know the runtime (and Docker's API), which only the worker side does.
    The ask is repeated every `SPACEHUB_ACTIVITY_FLUSH_S` while the request waits, in case the supervisor was
    restarting when it was first published.
  - one wait per space, shared by every request that arrives meanwhile; it ends when the route appears, when the
    space stops wanting to run (an error, a pause) or after `SPACEHUB_WAKE_TIMEOUT_S`.
  - API clients are held until then (503 with Retry-After when the time is up); a browser asking for HTML waits
    `SPACEHUB_WAKE_PAGE_AFTER_S` and then gets a small waiting page that follows the start at
    `STATUS_PATH` and reloads itself once the app answers.
  - `PAUSED` (the owner's pause) and `STOPPED` spaces are never woken by a request; Gradio's heartbeat stream
    never wakes anything, so a forgotten tab does not undo a space's sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import redis.asyncio as aioredis

from spacehub.proxy.activity import is_activity
from spacehub.proxy.routing import Route
from spacehub.settings import Settings
from spacehub.stages import SERVING, Stage

log = logging.getLogger(__name__)

WAKE_CHANNEL = "spacehub:wake"
# Where the waiting page follows the start, on the space's own host (RFC 8615's room for per-host metadata, which
# apps do not use). Answered here only while the space has no route; once it has one, the app answers (with its
# own 404), and the page takes any answer without our header as "ready".
STATUS_PATH = b"/.well-known/spacehub/wake"
STATUS_HEADER = "X-Spacehub-Wake"

# Stages in which a request wakes the space (or waits for the start that is under way).
WAKEABLE = SERVING | {Stage.SLEEPING, Stage.APP_STARTING}

_FAST_POLL_S = 0.005  # route checks while a thaw is expected (milliseconds away)
_SLOW_POLL_S = 0.05  # once it is clearly a start (seconds away)


class Entry(Protocol):
    """What the waker needs of the gateway's cached space row."""

    @property
    def id(self) -> int: ...
    @property
    def repo_id(self) -> str: ...
    @property
    def stage(self) -> str: ...
    @property
    def message(self) -> str: ...


class Waker:
    def __init__(
        self,
        settings: Settings,
        redis_conn: aioredis.Redis,
        *,
        route_of: Callable[[str], str | None],
        entry_of: Callable[[str], Entry | None],
        refresh: Callable[[], Coroutine[Any, Any, None]],
        space_route: Callable[[int, str], Route],
    ) -> None:
        self.settings = settings
        self.redis = redis_conn
        self.route_of = route_of
        self.entry_of = entry_of
        self.refresh = refresh
        self.space_route = space_route
        self._waits: dict[str, asyncio.Task[str | None]] = {}
        # outcome ("ready" / "gave_up") -> (wakes, seconds they took): read by /metrics (spacehub.metrics).
        self.wake_stats: dict[str, tuple[int, float]] = {"ready": (0, 0.0), "gave_up": (0, 0.0)}
        self._refreshing: asyncio.Task[None] | None = None

    async def route(self, entry: Entry, label: str, headers: list[tuple[bytes, bytes]], target: bytes) -> Route | None:
        """The route once the space is awake, or a local answer; None: not a space to wake (the gateway answers
        with the space's stage)."""
        is_status = target.split(b"?", 1)[0] == STATUS_PATH
        if entry.stage not in WAKEABLE:
            return _status(200, "failed", entry) if is_status else None
        if not is_status and not is_activity(target):
            # A heartbeat of a tab left open: never a reason to wake (nor to be held).
            return _json(503, f"space {entry.repo_id} is idle", "SpaceIdle", retry_after=True)
        wait = self._wait_for(label, entry.id)
        browser = not is_status and _wants_html(headers)
        timeout = self.settings.wake_page_after_s if is_status or browser else self.settings.wake_timeout_s
        upstream: str | None = None
        with contextlib.suppress(TimeoutError):
            upstream = await asyncio.wait_for(asyncio.shield(wait), timeout)
        current = self.entry_of(label) or entry
        if upstream is not None:
            if is_status:
                return _status(200, "ready", current)
            return self.space_route(entry.id, upstream)
        if current.stage not in WAKEABLE:
            return None if not is_status else _status(200, "failed", current)
        if is_status:
            return _status(503, "waiting", current)
        if browser:
            return _waiting_page(current)
        return _json(503, f"space {current.repo_id} is waking up ({current.stage}); try again shortly",
                     "SpaceWaking", retry_after=True, stage=current.stage)

    def _wait_for(self, label: str, space_id: int) -> asyncio.Task[str | None]:
        task = self._waits.get(label)
        if task is None or task.done():
            task = self._waits[label] = asyncio.create_task(self._wake(label, space_id))

            def forget(done: asyncio.Task[str | None]) -> None:
                if self._waits.get(label) is done:
                    del self._waits[label]

            task.add_done_callback(forget)
        return task

    async def _wake(self, label: str, space_id: int) -> str | None:
        started = time.monotonic()
        upstream = await self._wake_until_routed(label, space_id, started)
        outcome = "ready" if upstream is not None else "gave_up"
        count, seconds = self.wake_stats.get(outcome, (0, 0.0))
        self.wake_stats[outcome] = (count + 1, seconds + time.monotonic() - started)
        return upstream

    async def _wake_until_routed(self, label: str, space_id: int, started: float) -> str | None:
        """Ask for the wake (again every flush interval) until the route appears; None if the space stops
        wanting to run or the wake timeout passes."""
        deadline = started + self.settings.wake_timeout_s
        ask_every = max(0.2, self.settings.activity_flush_s)
        next_ask = 0.0
        while True:
            now = time.monotonic()
            upstream = self.route_of(label)
            if upstream is not None:
                return upstream
            if now >= deadline:
                return None
            if now >= next_ask:
                if next_ask:  # not the first ask: also look whether the space still wants to run
                    await self._refresh_once()
                    entry = self.entry_of(label)
                    if entry is None or entry.stage not in WAKEABLE:
                        return None
                    upstream = self.route_of(label)
                    if upstream is not None:
                        return upstream
                try:
                    await self.redis.publish(WAKE_CHANNEL, str(space_id))
                except Exception:  # noqa: BLE001 - Redis away for a moment: asked again at the next round
                    log.exception("could not ask to wake space %s", space_id)
                next_ask = now + ask_every
            await asyncio.sleep(_FAST_POLL_S if now - started < 1.0 else _SLOW_POLL_S)

    async def _refresh_once(self) -> None:
        """Reload the gateway's space rows, once for all the waits that ask at about the same time."""
        task = self._refreshing
        if task is None or task.done():
            task = self._refreshing = asyncio.create_task(self.refresh())
        with contextlib.suppress(Exception):
            await asyncio.shield(task)

    async def close(self) -> None:
        tasks = list(self._waits.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _wants_html(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name.lower() == b"accept" and b"text/html" in value.lower() for name, value in headers)


def _json(status: int, message: str, code: str, *, retry_after: bool = False, **extra: object) -> Route:
    headers: tuple[tuple[str, str], ...] = (("X-Error-Code", code), ("Cache-Control", "no-store"))
    if retry_after:
        headers += (("Retry-After", "2"),)
    body = json.dumps({"error": message, **extra}).encode()
    return Route(upstream=None, status=status, body=body, extra_headers=headers)


def _status(status: int, state: str, entry: Entry) -> Route:
    body = json.dumps({"state": state, "stage": entry.stage, "message": entry.message}).encode()
    return Route(upstream=None, status=status, body=body,
                 extra_headers=((STATUS_HEADER, state), ("Cache-Control", "no-store")))


def _waiting_page(entry: Entry) -> Route:
    name = html.escape(entry.repo_id)
    page = _PAGE.replace("{name}", name).replace("{stage}", html.escape(entry.stage))
    page = page.replace("{status_path}", STATUS_PATH.decode()).replace("{header}", STATUS_HEADER)
    return Route(upstream=None, status=503, body=page.encode(), content_type="text/html; charset=utf-8",
                 extra_headers=(("Retry-After", "2"), ("Cache-Control", "no-store")))


# Self-contained (no external script, style or font): it must work for any space, on any host.
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{name} is waking up</title>
<noscript><meta http-equiv="refresh" content="3"></noscript>
<style>
body{font-family:system-ui,sans-serif;display:flex;min-height:90vh;align-items:center;justify-content:center;
color:#1f2937;background:#f9fafb}
main{text-align:center;max-width:32rem;padding:2rem}
.dot{display:inline-block;width:.6rem;height:.6rem;margin:0 .15rem;border-radius:50%;background:#6366f1;
animation:b 1s infinite alternate}.dot:nth-child(2){animation-delay:.2s}.dot:nth-child(3){animation-delay:.4s}
@keyframes b{from{opacity:.2}to{opacity:1}}
#detail{color:#6b7280;font-size:.9rem;white-space:pre-wrap}
</style></head>
<body><main>
<h1>{name} is waking up</h1>
<p><span class="dot"></span><span class="dot"></span><span class="dot"></span></p>
<p>State: <strong id="stage" data-spacehub-stage>{stage}</strong></p>
<p id="detail" data-spacehub-wake="waiting">Starting the app&hellip;</p>
</main>
<script>
(function () {
  var detail = document.getElementById("detail");
  var stage = document.getElementById("stage");
  function poll() {
    fetch("{status_path}", {cache: "no-store", headers: {Accept: "application/json"}}).then(function (r) {
      var state = r.headers.get("{header}");
      if (state === "waiting") {
        return r.json().then(function (s) {
          stage.textContent = s.stage;
          if (s.stage !== "SLEEPING") { detail.textContent = s.message || s.stage; }
          setTimeout(poll, 300);
        });
      }
      if (state === "failed") {
        return r.json().then(function (s) {
          stage.textContent = s.stage;
          detail.textContent = "The space could not start (" + s.stage + ")" + (s.message ? ": " + s.message : "");
          detail.dataset.spacehubWake = "failed";
        });
      }
      location.reload();
    }).catch(function () { setTimeout(poll, 1000); });
  }
  poll();
})();
</script>
</body></html>
"""
