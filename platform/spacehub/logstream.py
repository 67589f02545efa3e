"""Build and run logs: one capped Redis stream per space and kind, read live by SSE endpoints and the CLI."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import redis

LogKind = Literal["build", "run"]


def stream_key(space_id: int, kind: LogKind) -> str:
    return f"spacehub:logs:{space_id}:{kind}"


@dataclass(frozen=True)
class LogLine:
    id: str
    text: str
    timestamp: str  # ISO 8601 with Z, as Hub clients parse it


def _timestamp_of(entry_id: str) -> str:
    millis = int(entry_id.split("-", 1)[0])
    return datetime.fromtimestamp(millis / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class LogWriter:
    def __init__(self, conn: redis.Redis, space_id: int, kind: LogKind, max_lines: int = 5000) -> None:
        self.conn = conn
        self.key = stream_key(space_id, kind)
        self.max_lines = max_lines

    def __call__(self, line: str) -> None:
        self.conn.xadd(self.key, {"line": line.rstrip("\n")}, maxlen=self.max_lines, approximate=True)

    def reset(self) -> None:
        """A new build starts a fresh build log."""
        self.conn.delete(self.key)


def delete_logs(conn: redis.Redis, space_id: int) -> None:
    conn.delete(stream_key(space_id, "build"), stream_key(space_id, "run"))


def _decode(entries: Any) -> list[LogLine]:
    # redis-py types stream replies loosely; they are [(id, {field: value}), ...]
    lines = []
    for raw_id, fields in entries:
        entry_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
        raw = fields.get(b"line", fields.get("line", b""))
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        lines.append(LogLine(entry_id, text, _timestamp_of(entry_id)))
    return lines


def read_logs(conn: redis.Redis, space_id: int, kind: LogKind, after: str = "0-0",
              tail: int | None = None) -> list[LogLine]:
    key = stream_key(space_id, kind)
    if tail is not None and after == "0-0":
        return list(reversed(_decode(conn.xrevrange(key, count=tail))))
    return _decode(conn.xrange(key, min=f"({after}" if after != "0-0" else "-"))


def follow_logs(conn: redis.Redis, space_id: int, kind: LogKind, after: str = "0-0",
                block_s: float = 1.0, until: float | None = None) -> Iterator[LogLine | None]:
    """Yield lines as they arrive; yields None after each quiet `block_s` so callers can send keep-alives."""
    key = stream_key(space_id, kind)
    last = after
    while until is None or time.monotonic() < until:
        result: Any = conn.xread({key: last}, block=int(block_s * 1000), count=500)
        if not result:
            yield None
            continue
        for _key, entries in result:
            for line in _decode(entries):
                last = line.id
                yield line
