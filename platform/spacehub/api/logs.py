"""Build and run logs as Server-Sent Events, in the Hub's event shape."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from spacehub import access
from spacehub.context import Platform
from spacehub.errors import NotFound
from spacehub.logstream import LogKind, LogLine, follow_logs, read_logs
from spacehub.requestdeps import SESSION, get_platform, optional_user
from spacehub.store.models import User

router = APIRouter()


def _event(line: LogLine) -> bytes:
    payload = json.dumps({"data": line.text + "\n", "timestamp": line.timestamp})
    return f"id: {line.id}\ndata: {payload}\n\n".encode()


def _events(platform: Platform, space_id: int, kind: LogKind, follow: bool, tail: int | None,
            after: str) -> Iterator[bytes]:
    last = after
    for line in read_logs(platform.redis, space_id, kind, after=after, tail=tail):
        last = line.id
        yield _event(line)
    if not follow:
        return
    keepalive = platform.settings.sse_keepalive_s
    quiet_since = time.monotonic()
    for item in follow_logs(platform.redis, space_id, kind, after=last, block_s=min(1.0, keepalive)):
        if item is None:
            if time.monotonic() - quiet_since >= keepalive:
                quiet_since = time.monotonic()
                yield b": keep-alive\n\n"
            continue
        quiet_since = time.monotonic()
        yield _event(item)


@router.get("/api/spaces/{owner}/{name}/logs/{kind}")
# `follow`, `tail` and `after` (a stream id: only later lines) are spacehub's additions to the Hub's endpoint.
def space_logs(owner: str, name: str, kind: str, follow: bool = True, tail: int | None = None,
               after: str = Query(default="0-0", pattern=r"^\d+-\d+$"),
               platform: Platform = Depends(get_platform), session: Session = SESSION,
               user: User | None = Depends(optional_user)) -> StreamingResponse:
    if kind not in ("build", "run"):
        raise NotFound(f"no log named {kind!r}: use 'build' or 'run'")
    space = access.get_visible(session, user, owner, name)
    log_kind: LogKind = "build" if kind == "build" else "run"
    return StreamingResponse(_events(platform, space.id, log_kind, follow, tail, after), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
