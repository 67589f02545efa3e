"""Shared pieces of the proxy integration tests (no tests of its own).

Everything is real: an event loop in a thread runs the proxy and the upstreams (uvicorn serving a Starlette
app, or raw asyncio servers for misbehaving ones) on 127.0.0.1; tests talk to the proxy over blocking sockets
from the test thread, so a proxy bug shows up as a wrong byte on the wire, not as a mocked call.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import uvicorn
import uvloop
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route as HttpRoute
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from spacehub.proxy import ProxyServer, Route, Upstream
from spacehub.proxy.activity import RequestCounter

T = TypeVar("T")

SPACE_HOST = "alice-demo.space.localhost"
PLATFORM_HOST = "localhost"


class LoopThread:
    """An event loop (uvloop, as in production, or plain asyncio) running in a daemon thread."""

    def __init__(self, kind: str = "uvloop") -> None:
        self.loop = uvloop.new_event_loop() if kind == "uvloop" else asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T]) -> T:
        async def call() -> T:
            return fn()

        return self.run(call())

    def close(self) -> None:
        async def cancel_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_rest())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


# Upstream: a Starlette app that reports what reached it


@dataclass
class AppState:
    requests: list[dict[str, Any]] = field(default_factory=list)
    sse_sent_at: list[float] = field(default_factory=list)
    upload_progress: int = 0
    upload_first_byte_at: float | None = None
    download_produced: int = 0
    stream_closed: threading.Event = field(default_factory=threading.Event)


def make_app(state: AppState) -> Starlette:
    async def echo(request: Request) -> Response:
        digest, size = hashlib.sha256(), 0
        async for piece in request.stream():
            digest.update(piece)
            size += len(piece)
        seen = {
            "method": request.method,
            "path": request.url.path,
            "query": request.url.query,
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.headers.raw],
            "body_size": size,
            "body_sha256": digest.hexdigest(),
            "client_port": request.client.port if request.client else None,
        }
        state.requests.append(seen)
        return JSONResponse(seen)

    async def upload(request: Request) -> Response:
        digest, size = hashlib.sha256(), 0
        async for piece in request.stream():
            if state.upload_first_byte_at is None and piece:
                state.upload_first_byte_at = time.monotonic()
            digest.update(piece)
            size += len(piece)
            state.upload_progress = size
        return JSONResponse({"size": size, "sha256": digest.hexdigest()})

    async def sse(request: Request) -> Response:
        count = int(request.query_params.get("n", "4"))
        gap = float(request.query_params.get("gap", "0.5"))

        async def events() -> Any:
            try:
                for i in range(count):
                    state.sse_sent_at.append(time.monotonic())
                    yield f"event: tick\ndata: {i}\n\n".encode()
                    await asyncio.sleep(gap)
            finally:  # reached early only when the client connection went away (cancelled or closed)
                state.stream_closed.set()

        return StreamingResponse(events(), media_type="text/event-stream")

    async def download(request: Request) -> Response:
        size = int(request.query_params.get("mb", "1")) * 1024 * 1024
        piece = b"d" * (1024 * 1024)

        async def pieces() -> Any:
            while state.download_produced < size:
                state.download_produced += len(piece)
                yield piece

        return StreamingResponse(pieces(), media_type="application/octet-stream")

    async def cookies(request: Request) -> Response:
        response = JSONResponse({"ok": True})
        response.raw_headers.append((b"set-cookie", b"theme=dark; Domain=.space.localhost; Path=/; HttpOnly"))
        response.raw_headers.append((b"set-cookie", b"plain=1; Path=/"))
        response.raw_headers.append((b"set-cookie", b"odd=2; path=/; DOMAIN=example.org; Secure"))
        return response

    async def ws_echo(websocket: WebSocket) -> None:
        await websocket.accept()
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in websocket.headers.raw}
        await websocket.send_json({"x-forwarded-for": headers.get("x-forwarded-for"), "host": headers.get("host")})
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await websocket.send_text("echo:" + message["text"])
            else:
                await websocket.send_bytes(message["bytes"])

    return Starlette(
        routes=[
            HttpRoute("/echo", echo, methods=["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]),
            HttpRoute("/upload", upload, methods=["POST", "PUT"]),
            HttpRoute("/sse", sse),
            HttpRoute("/download", download),
            HttpRoute("/cookies", cookies),
            WebSocketRoute("/ws", ws_echo),
        ]
    )


async def start_uvicorn(app: Starlette, *, uds: str | None = None) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        uds=uds,
        log_level="warning",
        lifespan="off",
        ws="websockets-sansio",
    )
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    return server, task


def uvicorn_port(server: uvicorn.Server) -> int:
    return int(server.servers[0].sockets[0].getsockname()[1])


async def stop_uvicorn(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    server.should_exit = True
    await asyncio.wait_for(task, 10)


# Upstream: a raw asyncio server, for upstreams that misbehave on purpose


class RawUpstream:
    """A TCP server that hands each connection to `handler` and records every byte received."""

    def __init__(
        self, handler: Callable[[RawUpstream, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
    ) -> None:
        self.handler = handler
        self.connections = 0
        self.received = bytearray()
        self.closed_connections = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._on_connection, "127.0.0.1", 0)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self.port

    async def read_head(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        self.received += head
        return head

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(self, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.closed_connections += 1
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


async def record_everything(upstream: RawUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer `200 ok` to anything, after recording it: for requests that must never arrive."""
    while data := await reader.read(65536):
        upstream.received += data
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()


# The proxy under test


def static_resolver(
    routes: dict[str, Route], default: Route | None = None
) -> Callable[[str, list[tuple[bytes, bytes]]], Awaitable[Route]]:
    seen: list[str] = []

    async def resolve(host: str, headers: list[tuple[bytes, bytes]]) -> Route:
        seen.append(host)
        return routes.get(host) or default or Route(None, status=421)

    resolve.seen = seen  # type: ignore[attr-defined]
    return resolve


def space_route(upstream: Upstream, space_id: int = 7) -> Route:
    return Route(upstream, space_id=space_id, is_space=True)


def platform_route(upstream: Upstream) -> Route:
    return Route(upstream)


def counts(activity: RequestCounter) -> dict[int, tuple[int, int]]:
    """Per space: (requests in flight, requests ended), as the proxy's activity counter (`activity=`, what `spacehub
    serve` gives it) holds them. Read from the test thread while the proxy's loop runs: a copy first."""
    return {space_id: (count.in_flight, count.requests) for space_id, count in list(activity.spaces.items())}


async def start_proxy(resolver: Any, **options: Any) -> ProxyServer:
    proxy = ProxyServer(resolver, **options)
    await proxy.start("127.0.0.1", 0)
    return proxy


# A blocking HTTP client that keeps one connection and shows exactly what came back


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    will_close: bool

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self) -> Any:
        import json

        return json.loads(self.body)


class _KeepOpen:
    """The socket file, shared by successive responses; http.client would close it after each one."""

    def __init__(self, fp: Any) -> None:
        self._fp = fp

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fp, name)

    def close(self) -> None:
        pass

    def really_close(self) -> None:
        self._fp.close()


class _FileSocket:
    def __init__(self, fp: Any) -> None:
        self._fp = fp

    def makefile(self, mode: str) -> Any:
        return self._fp


class RawClient:
    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = _KeepOpen(self.sock.makefile("rb"))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self, method: str = "GET") -> Reply:
        resp = http.client.HTTPResponse(_FileSocket(self.file), method=method)  # type: ignore[arg-type]
        resp.begin()
        body = resp.read()
        return Reply(resp.status, resp.getheaders(), body, bool(resp.will_close))

    def request(
        self,
        method: str,
        path: str,
        host: str,
        headers: list[tuple[str, str]] | tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
    ) -> Reply:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
        lines += [f"{k}: {v}" for k, v in headers]
        if body or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(body)}")
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        return self.response(method)

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True once the proxy closed the connection (whatever it still sent before is skipped)."""
        self.sock.settimeout(timeout)
        try:
            while self.file.read1(65536):
                pass
            return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.file.really_close()  # the socket's descriptor stays open while a makefile() object is open
        self.sock.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
