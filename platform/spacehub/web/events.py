"""One live stream per space page: stage changes, the build log and the run log, multiplexed as SSE events.

Browsers allow six connections per host, so a page opens one EventSource for everything it shows live. The
stream holds no database connection while it waits: the stage is re-read every `ui_poll_s` in a short
session; log lines come from one blocking XREAD over both Redis streams.

Events: `stage` ({stage, label, tone, group, message, app_url}), `build` and `run` ({lines: [...]}), `gone`
(the space was deleted or is no longer visible). Each log event's id is `<build id>/<run id>`, so a
reconnecting EventSource (Last-Event-ID) resumes where it left off.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from starlette.datastructures import State

from spacehub import access
from spacehub.context import Platform
from spacehub.logstream import stream_key
from spacehub.redisconn import redis_url
from spacehub.requestdeps import optional_user
from spacehub.store.models import Space, User
from spacehub.web.deps import WebContext
from spacehub.web.render import stage_look
from spacehub.web.space_pages import app_url

router = APIRouter(include_in_schema=False)

TAIL_LINES = 500  # lines of each log a page gets when it opens
_STREAM_ID = re.compile(r"^\d+-\d+$")


@dataclass(frozen=True)
class Viewer:
    space_id: int
    user_id: int | None


def _authorize(platform: Platform, request: Request, owner: str, name: str) -> Viewer:
    with platform.db.session() as session:
        user = optional_user(request, session)
        space = access.get_visible(session, user, owner, name)
        return Viewer(space.id, user.id if user else None)


def _stage_payload(platform: Platform, web: WebContext, viewer: Viewer) -> dict[str, Any] | None:
    """The space's stage as the page shows it; None once the viewer may no longer see it."""
    with platform.db.session() as session:
        space = session.get(Space, viewer.space_id)
        user = session.get(User, viewer.user_id) if viewer.user_id is not None else None
        if space is None or not access.can_read(session, user, space):
            return None
        look = stage_look(space.stage)
        return {"stage": str(space.stage), "label": look.label, "tone": look.tone, "group": look.group,
                "message": space.message or "", "sha": space.running_sha,
                "app_url": app_url(web, space, user) if look.group == "app" else None}


def _positions(last_event_id: str | None) -> tuple[str | None, str | None]:
    if last_event_id:
        build, _, run = last_event_id.partition("/")
        if _STREAM_ID.match(build) and _STREAM_ID.match(run):
            return build, run
    return None, None


def _event(name: str, data: dict[str, Any], event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _lines(entries: list[Any]) -> tuple[list[str], str | None]:
    last = None
    lines = []
    for entry_id, fields in entries:
        last = _text(entry_id)
        lines.append(_text(fields.get(b"line", fields.get("line", b""))))
    return lines, last


def async_redis(request: Request) -> aioredis.Redis:
    state: State = request.app.state
    conn = getattr(state, "web_redis", None)
    if conn is None:
        conn = aioredis.Redis.from_url(redis_url(request.app.state.platform.settings))
        state.web_redis = conn
    return conn


async def _stream(request: Request, platform: Platform, web: WebContext, viewer: Viewer, logs: bool,
                  build_after: str | None, run_after: str | None) -> AsyncIterator[bytes]:
    settings = platform.settings
    conn = async_redis(request)
    keys = {"build": stream_key(viewer.space_id, "build"), "run": stream_key(viewer.space_id, "run")}
    positions = {"build": build_after, "run": run_after}

    stage = await run_in_threadpool(_stage_payload, platform, web, viewer)
    if stage is None:
        yield _event("gone", {})
        return
    yield _event("stage", stage)
    if logs:
        for kind, key in keys.items():
            if positions[kind] is None:
                newest_first = cast(list[Any], await conn.xrevrange(key, count=TAIL_LINES))
                tail = list(reversed(newest_first))
                lines, last = _lines(tail)
                positions[kind] = last or "0-0"
                if lines:
                    yield _event(kind, {"lines": lines}, f"{positions['build'] or '0-0'}/{positions['run'] or '0-0'}")
    next_poll = time.monotonic() + settings.ui_poll_s
    last_sent = time.monotonic()
    while True:
        result: list[Any] | None = None
        if logs:
            streams: dict[Any, Any] = {keys["build"]: positions["build"] or "0-0",
                                       keys["run"]: positions["run"] or "0-0"}
            result = cast(list[Any], await conn.xread(streams, block=max(1, int(settings.ui_poll_s * 1000)),
                                                      count=500))
        else:
            await asyncio.sleep(settings.ui_poll_s)
        for key, entries in result or []:
            kind = "build" if _text(key) == keys["build"] else "run"
            lines, last = _lines(entries)
            positions[kind] = last or positions[kind]
            yield _event(kind, {"lines": lines}, f"{positions['build']}/{positions['run']}")
            last_sent = time.monotonic()
        now = time.monotonic()
        if now >= next_poll:
            next_poll = now + settings.ui_poll_s
            current = await run_in_threadpool(_stage_payload, platform, web, viewer)
            if current is None:
                yield _event("gone", {})
                return
            if {k: current[k] for k in ("stage", "message", "sha")} != {k: stage[k] for k in ("stage", "message",
                                                                                              "sha")}:
                stage = current
                yield _event("stage", stage)
                last_sent = now
        if now - last_sent >= settings.sse_keepalive_s:
            last_sent = now
            yield b": keep-alive\n\n"


@router.get("/spaces/{owner}/{name}/events")
async def space_events(request: Request, owner: str, name: str, logs: bool = Query(True)) -> StreamingResponse:
    platform: Platform = request.app.state.platform
    web: WebContext = request.app.state.web
    viewer = await run_in_threadpool(_authorize, platform, request, owner, name)
    build_after, run_after = _positions(request.headers.get("last-event-id"))
    return StreamingResponse(_stream(request, platform, web, viewer, logs, build_after, run_after),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
