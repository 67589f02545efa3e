"""Streaming through the proxy: SSE as it is sent, big uploads without buffering, WebSockets, disconnects."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from test_proxy_harness import (
    SPACE_HOST,
    AppState,
    LoopThread,
    RawClient,
    RawUpstream,
    counts,
    make_app,
    space_route,
    start_proxy,
    start_uvicorn,
    static_resolver,
    stop_uvicorn,
    uvicorn_port,
    wait_for,
)
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as websocket_connect

from spacehub.proxy import ProxyServer, Upstream
from spacehub.proxy.activity import RequestCounter

pytestmark = pytest.mark.timeout(90)

MB = 1024 * 1024


@dataclass
class Env:
    loop: LoopThread
    state: AppState
    upstream: Upstream
    proxy: ProxyServer
    activity: RequestCounter

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.proxy.port}"


@pytest.fixture(params=["uvloop", "asyncio"])
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    loop = LoopThread(request.param)
    state = AppState()
    server, task = loop.run(start_uvicorn(make_app(state)))
    upstream = Upstream("127.0.0.1", uvicorn_port(server))
    activity = RequestCounter()
    # Every host goes to the one space: clients here need not set a Host header.
    resolver = static_resolver({}, default=space_route(upstream, space_id=3))
    proxy = loop.run(start_proxy(resolver, activity=activity))
    yield Env(loop, state, upstream, proxy, activity)
    loop.run(proxy.close())
    loop.run(stop_uvicorn(server, task))
    loop.close()


def test_sse_events_arrive_as_they_are_sent(env: Env) -> None:
    arrivals: list[float] = []
    with httpx.stream("GET", f"{env.base}/sse?n=4&gap=0.5", headers={"Host": SPACE_HOST}, timeout=10) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data:"):
                arrivals.append(time.monotonic())
    sent = env.state.sse_sent_at
    assert len(arrivals) == len(sent) == 4
    # Each event reached the client before the app even produced the next one: nothing was held back.
    for i in range(3):
        assert arrivals[i] < sent[i + 1], (i, arrivals, sent)
    assert arrivals[-1] - arrivals[0] >= 1.0  # spread over the stream's life, not one burst at the end


def _upload_head(path: str, length: int | None) -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return f"POST {path} HTTP/1.1\r\nHost: {SPACE_HOST}\r\n{framing}\r\n\r\n".encode()


def test_20mb_upload_is_streamed_through(env: Env) -> None:
    payload = hashlib.sha256(b"seed").digest() * (20 * MB // 32)
    client = RawClient(env.proxy.port, timeout=30)
    client.send(_upload_head("/upload", len(payload)))
    half = len(payload) // 2
    client.send(payload[:half])
    # The app is already reading while the client still holds back the second half: the proxy streams.
    assert wait_for(lambda: env.state.upload_progress > 0, timeout=10)
    progress_before_second_half = env.state.upload_progress
    client.send(payload[half:])
    reply = client.response()
    assert reply.status == 200
    assert reply.json() == {"size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    assert 0 < progress_before_second_half < len(payload)
    # The connection is still good for the next request.
    assert client.request("GET", "/echo", SPACE_HOST).status == 200
    client.close()


def test_chunked_20mb_upload_is_streamed_through(env: Env) -> None:
    piece = b"0123456789abcdef" * (MB // 16)
    digest = hashlib.sha256()

    def body() -> Iterator[bytes]:
        for i in range(20):
            if i == 10:
                assert wait_for(lambda: env.state.upload_progress > 0, timeout=10)
            digest.update(piece)
            yield piece

    response = httpx.post(f"{env.base}/upload", content=body(), headers={"Host": SPACE_HOST}, timeout=30)
    assert response.status_code == 200
    assert response.json() == {"size": 20 * MB, "sha256": digest.hexdigest()}


def test_upload_backpressure_bounds_what_the_proxy_holds(env: Env) -> None:
    """An upstream that never reads the body: the client soon cannot send more (nothing piles up in memory)."""
    release = asyncio.Event()

    async def stalled(upstream: RawUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await upstream.read_head(reader)
        await release.wait()

    raw = RawUpstream(stalled)
    port = env.loop.run(raw.start())
    resolver = static_resolver({}, default=space_route(Upstream("127.0.0.1", port)))
    proxy = env.loop.run(start_proxy(resolver))
    total = 512 * MB
    sent = 0
    try:
        sock = socket.create_connection(("127.0.0.1", proxy.port))
        sock.sendall(_upload_head("/", total))
        sock.setblocking(False)
        chunk = memoryview(b"x" * MB)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and sent < total:
            try:
                sent += sock.send(chunk)
            except BlockingIOError:
                time.sleep(0.01)
        # Kernel socket buffers hold some megabytes; a proxy that buffered bodies would take all 512.
        assert 0 < sent < 128 * MB
        sock.close()
    finally:
        env.loop.call(release.set)
        env.loop.run(proxy.close())
        env.loop.run(raw.stop())


def test_download_backpressure_holds_the_app_back_while_the_client_does_not_read(env: Env) -> None:
    client = RawClient(env.proxy.port)
    client.send(f"GET /download?mb=512 HTTP/1.1\r\nHost: {SPACE_HOST}\r\n\r\n".encode())
    assert client.file.readline().startswith(b"HTTP/1.1 200")
    time.sleep(1.5)  # the client reads nothing more
    # Socket buffers hold some megabytes; a proxy that buffered responses would have drained all 512 MB.
    assert env.state.download_produced < 128 * MB
    client.sock.settimeout(30)
    received = 0
    while received < 8 * MB:  # and the stream flows again once the client reads
        received += len(client.file.read1(MB))
    client.close()


def test_websocket_echo_through_the_proxy(env: Env) -> None:
    url = f"ws://127.0.0.1:{env.proxy.port}/ws"
    with websocket_connect(url, additional_headers={"X-Forwarded-For": "6.6.6.6"}, open_timeout=5) as ws:
        hello = json.loads(ws.recv(timeout=5))
        assert hello == {"x-forwarded-for": "127.0.0.1", "host": f"127.0.0.1:{env.proxy.port}"}
        ws.send("hi")
        assert ws.recv(timeout=5) == "echo:hi"
        big = bytes(range(256)) * 4096  # 1 MiB binary message
        ws.send(big)
        assert ws.recv(timeout=5) == big
    assert wait_for(lambda: counts(env.activity) == {3: (0, 1)})  # the tunnel: one request, ended on close


def test_client_disconnect_mid_stream_stops_the_upstream(env: Env) -> None:
    client = RawClient(env.proxy.port)
    client.send(f"GET /sse?n=100000&gap=0.05 HTTP/1.1\r\nHost: {SPACE_HOST}\r\n\r\n".encode())
    received = b""
    while b"data: 0" not in received:
        received += client.sock.recv(4096)
    assert counts(env.activity) == {3: (1, 0)}
    client.close()
    # The request counts as ended, and the app's stream stops long before its 100000 events.
    assert wait_for(lambda: counts(env.activity) == {3: (0, 1)})
    assert env.state.stream_closed.wait(5)
    assert len(env.state.sse_sent_at) < 1000


def test_expect_100_continue_is_relayed(env: Env) -> None:
    client = RawClient(env.proxy.port)
    client.send(
        f"POST /echo HTTP/1.1\r\nHost: {SPACE_HOST}\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n".encode()
    )
    assert client.file.readline() == b"HTTP/1.1 100 Continue\r\n"
    assert client.file.readline() == b"\r\n"
    client.send(b"hello")
    reply = client.response()
    assert reply.status == 200 and reply.json()["body_size"] == 5
    client.close()


async def _close_delimited(upstream: RawUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await upstream.read_head(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
    for word in (b"until ", b"the ", b"end"):
        writer.write(word)
        await writer.drain()
        await asyncio.sleep(0.05)
    writer.close()


def test_close_delimited_response_is_rechunked_and_the_client_connection_survives(env: Env) -> None:
    raw = RawUpstream(_close_delimited)
    port = env.loop.run(raw.start())
    resolver = static_resolver({}, default=space_route(Upstream("127.0.0.1", port)))
    proxy = env.loop.run(start_proxy(resolver))
    try:
        client = RawClient(proxy.port)
        for _ in range(2):
            reply = client.request("GET", "/", SPACE_HOST)
            assert reply.status == 200
            assert reply.body == b"until the end"
            assert reply.header("transfer-encoding") == "chunked"
            assert not reply.will_close
        assert raw.connections == 2  # a close-delimited connection is never pooled
        client.close()
    finally:
        env.loop.run(proxy.close())
        env.loop.run(raw.stop())


async def _truncated(upstream: RawUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await upstream.read_head(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
    await writer.drain()
    writer.close()


def test_truncated_upstream_response_is_not_passed_off_as_complete(env: Env) -> None:
    raw = RawUpstream(_truncated)
    port = env.loop.run(raw.start())
    resolver = static_resolver({}, default=space_route(Upstream("127.0.0.1", port)))
    proxy = env.loop.run(start_proxy(resolver))
    try:
        client = RawClient(proxy.port)
        client.send(f"GET / HTTP/1.1\r\nHost: {SPACE_HOST}\r\n\r\n".encode())
        # The client got a 200 head and part of the body, then a cut connection: never a "complete" response.
        with pytest.raises((http.client.IncompleteRead, ConnectionResetError)):
            client.response()
        client.close()
    finally:
        env.loop.run(proxy.close())
        env.loop.run(raw.stop())


def proxy_tasks(loop: LoopThread) -> list[str]:
    """Names of the tasks on the loop that run proxy code."""

    def names() -> list[str]:
        tasks = asyncio.all_tasks(loop.loop)
        return [
            t.get_coro().__qualname__  # type: ignore[union-attr]
            for t in tasks
            if "spacehub/proxy" in getattr(getattr(t.get_coro(), "cr_code", None), "co_filename", "")
        ]

    return loop.call(names)


def test_finished_and_abandoned_exchanges_leave_no_tasks(env: Env) -> None:
    sse = RawClient(env.proxy.port)
    sse.send(f"GET /sse?n=100000&gap=0.05 HTTP/1.1\r\nHost: {SPACE_HOST}\r\n\r\n".encode())
    sse.sock.recv(4096)
    with websocket_connect(f"ws://127.0.0.1:{env.proxy.port}/ws", open_timeout=5) as ws:
        ws.recv(timeout=5)
        assert env.proxy.open_connections == 2
    upload = RawClient(env.proxy.port)
    upload.send(_upload_head("/upload", 10 * MB) + b"x" * MB)  # then abandoned mid-body
    assert wait_for(lambda: env.state.upload_progress > 0)
    upload.close()
    sse.close()
    assert wait_for(lambda: env.proxy.open_connections == 0)
    assert wait_for(lambda: proxy_tasks(env.loop) == []), proxy_tasks(env.loop)
    assert wait_for(lambda: env.activity.busy() == [])  # every request counted as started has ended


def test_close_ends_in_flight_streams_and_tunnels(env: Env) -> None:
    sse = RawClient(env.proxy.port)
    sse.send(f"GET /sse?n=100000&gap=0.05 HTTP/1.1\r\nHost: {SPACE_HOST}\r\n\r\n".encode())
    sse.sock.recv(4096)
    with websocket_connect(f"ws://127.0.0.1:{env.proxy.port}/ws", open_timeout=5) as ws:
        ws.recv(timeout=5)
        env.loop.run(env.proxy.close(), timeout=5)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
    assert sse.closed_by_peer()
    sse.close()
    assert env.proxy.open_connections == 0
    assert proxy_tasks(env.loop) == []
    assert wait_for(lambda: env.activity.busy() == [])  # every request counted as started has ended
