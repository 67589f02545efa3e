"""Per-space traffic counts (`ProxyServer(traffic=TrafficCounter())`): a real proxy in front of a real upstream,
clients on raw sockets, so that the bytes the counts claim can be compared with the bytes on the wire."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from test_proxy_harness import (
    SPACE_HOST,
    AppState,
    LoopThread,
    RawUpstream,
    make_app,
    space_route,
    start_proxy,
    start_uvicorn,
    static_resolver,
    stop_uvicorn,
    uvicorn_port,
    wait_for,
)

from spacehub.proxy import ProxyServer, Upstream
from spacehub.proxy.traffic import DURATION_BUCKETS, SpaceTraffic, TrafficCounter

pytestmark = pytest.mark.timeout(60)

SPACE_ID = 5
DOWN_HOST = "down-space.space.localhost"
SILENT_HOST = "silent-space.space.localhost"


@dataclass
class Env:
    loop: LoopThread
    proxy: ProxyServer
    traffic: TrafficCounter
    silent: RawUpstream

    def counts(self, space_id: int = SPACE_ID) -> SpaceTraffic:
        return self.loop.call(lambda: self.traffic.spaces[space_id])

    def requests(self, status_class: int, space_id: int = SPACE_ID) -> int:
        def count() -> int:
            traffic = self.traffic.spaces.get(space_id)
            of_class = traffic.by_status[status_class] if traffic is not None else None
            return sum(of_class.counts) if of_class is not None else 0

        return self.loop.call(count)


async def never_answer(upstream: RawUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await upstream.read_head(reader)
    await reader.read()  # until the proxy gives up on it


@pytest.fixture
def env() -> Iterator[Env]:
    loop = LoopThread("uvloop")
    server, task = loop.run(start_uvicorn(make_app(AppState())))
    silent = RawUpstream(never_answer)
    silent_port = loop.run(silent.start())
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connecting to it is refused
    resolver = static_resolver({
        SPACE_HOST: space_route(Upstream("127.0.0.1", uvicorn_port(server)), space_id=SPACE_ID),
        DOWN_HOST: space_route(Upstream("127.0.0.1", closed.getsockname()[1]), space_id=6),
        SILENT_HOST: space_route(Upstream("127.0.0.1", silent_port), space_id=8),
    })
    traffic = TrafficCounter()
    proxy = loop.run(start_proxy(resolver, traffic=traffic))
    yield Env(loop, proxy, traffic, silent)
    loop.run(proxy.close())
    loop.run(silent.stop())
    loop.run(stop_uvicorn(server, task))
    loop.close()
    closed.close()


def exchange(sock: socket.socket, request: bytes) -> bytes:
    """Send `request` and return the raw response (head and Content-Length body), byte for byte."""
    sock.sendall(request)
    raw = b""
    while b"\r\n\r\n" not in raw:
        piece = sock.recv(65536)
        assert piece, raw
        raw += piece
    head, _, body = raw.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        piece = sock.recv(65536)
        assert piece
        body += piece
    return raw[: len(head) + 4 + length]


def test_bytes_each_way_are_those_on_the_wire_on_both_paths(env: Env) -> None:
    sent = received = 0
    with socket.create_connection(("127.0.0.1", env.proxy.port), timeout=10) as sock:
        for n in range(3):  # bodiless: relayed in the socket callbacks, one keep-alive connection
            request = f"GET /echo?n={n} HTTP/1.1\r\nHost: {SPACE_HOST}\r\n\r\n".encode()
            reply = exchange(sock, request)
            assert reply.startswith(b"HTTP/1.1 200")
            sent, received = sent + len(request), received + len(reply)
        body = b"u" * 300_000  # with a body: streamed by a task
        request = f"POST /upload HTTP/1.1\r\nHost: {SPACE_HOST}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
        reply = exchange(sock, request)
        assert reply.startswith(b"HTTP/1.1 200")
        sent, received = sent + len(request), received + len(reply)
    assert wait_for(lambda: env.requests(2) == 4)
    counts = env.counts()
    assert (counts.bytes_in, counts.bytes_out) == (sent, received)
    assert env.requests(4) == env.requests(5) == env.requests(0) == 0


def test_status_classes_are_those_the_client_got(env: Env) -> None:
    with socket.create_connection(("127.0.0.1", env.proxy.port), timeout=10) as sock:
        assert exchange(sock, f"GET /nothing-here HTTP/1.1\r\nHost: {SPACE_HOST}\r\n\r\n".encode()).startswith(
            b"HTTP/1.1 404")
        assert exchange(sock, f"GET /echo HTTP/1.1\r\nHost: {SPACE_HOST}\r\n\r\n".encode()).startswith(
            b"HTTP/1.1 200")
    # The proxy's own answer when the space's upstream refuses: a 5xx of that space.
    with socket.create_connection(("127.0.0.1", env.proxy.port), timeout=10) as sock:
        assert exchange(sock, f"GET / HTTP/1.1\r\nHost: {DOWN_HOST}\r\n\r\n".encode()).startswith(b"HTTP/1.1 502")
    assert wait_for(lambda: env.requests(4) == 1 and env.requests(2) == 1 and env.requests(5, space_id=6) == 1)
    assert env.requests(2, space_id=6) == 0


def test_a_client_that_leaves_before_any_answer_counts_as_none(env: Env) -> None:
    with socket.create_connection(("127.0.0.1", env.proxy.port), timeout=10) as sock:
        sock.sendall(f"GET /slow HTTP/1.1\r\nHost: {SILENT_HOST}\r\n\r\n".encode())
        assert wait_for(lambda: b"GET /slow" in env.silent.received)
    assert wait_for(lambda: env.requests(0, space_id=8) == 1)
    assert sum(env.requests(c, space_id=8) for c in range(1, 10)) == 0


def test_a_stream_counts_its_whole_length(env: Env) -> None:
    with socket.create_connection(("127.0.0.1", env.proxy.port), timeout=10) as sock:
        sock.sendall(f"GET /sse?n=3&gap=0.2 HTTP/1.1\r\nHost: {SPACE_HOST}\r\nConnection: close\r\n\r\n".encode())
        while sock.recv(65536):
            pass
    assert wait_for(lambda: env.requests(2) == 1)
    answered = env.counts().by_status[2]
    assert answered is not None
    assert answered.seconds >= 0.4  # three events 0.2 s apart: the stream lasted at least that long
    assert sum(answered.counts[: DURATION_BUCKETS.index(0.25) + 1]) == 0
