"""The fast upstream every proxy bench target forwards to: uvicorn (httptools + uvloop) serving a bare ASGI app.

- `GET /` (any other path too): 200 with a 200-byte body.
- `GET /sse?n=N&gap=S`: N Server-Sent Events, one every S seconds; each event's data is the CLOCK_MONOTONIC time
  (ns) at which it was sent, so a client on the same machine can tell how long it took to arrive.

Run as `python tests/bench/bench_upstream.py PORT`; it prints `ready` once it accepts connections.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import uvicorn

BODY = b"x" * 200
_PLAIN_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())]
_SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/sse":
        await _sse(scope, send)
        return
    await send({"type": "http.response.start", "status": 200, "headers": _PLAIN_HEADERS})
    await send({"type": "http.response.body", "body": BODY})


async def _sse(scope: dict[str, Any], send: Send) -> None:
    query = parse_qs(scope["query_string"].decode())
    count = int(query.get("n", ["10"])[0])
    gap = float(query.get("gap", ["0.05"])[0])
    await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
    for _ in range(count):
        event = b"data: %d\n\n" % time.monotonic_ns()
        await send({"type": "http.response.body", "body": event, "more_body": True})
        await asyncio.sleep(gap)
    await send({"type": "http.response.body", "body": b""})


def main() -> None:
    port = int(sys.argv[1])
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_keep_alive=30,
    )
    server = uvicorn.Server(config)

    async def serve() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        print("ready", flush=True)
        await task

    import uvloop

    uvloop.run(serve())


if __name__ == "__main__":
    main()
