"""Upstream keep-alive: reuse, idle expiry, and the one retry when a pooled connection was closed under us."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from test_proxy_harness import (
    SPACE_HOST,
    LoopThread,
    RawClient,
    RawUpstream,
    space_route,
    start_proxy,
    static_resolver,
    wait_for,
)

from spacehub.proxy import ProxyServer, Upstream

pytestmark = pytest.mark.timeout(60)

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    thread = LoopThread("uvloop")
    yield thread
    thread.close()


def serve(loop: LoopThread, handler: object, **options: object) -> tuple[RawUpstream, ProxyServer]:
    upstream = RawUpstream(handler)  # type: ignore[arg-type]
    port = loop.run(upstream.start())
    proxy = loop.run(start_proxy(static_resolver({}, default=space_route(Upstream("127.0.0.1", port))), **options))
    return upstream, proxy


def stop(loop: LoopThread, upstream: RawUpstream, proxy: ProxyServer) -> None:
    loop.run(proxy.close())
    loop.run(upstream.stop())


async def keep_alive_ok(upstream: RawUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        await upstream.read_head(reader)
        writer.write(OK)
        await writer.drain()


def test_one_upstream_connection_serves_many_clients(loop: LoopThread) -> None:
    upstream, proxy = serve(loop, keep_alive_ok)
    try:
        for _ in range(5):
            client = RawClient(proxy.port)
            assert client.request("GET", "/", SPACE_HOST).body == b"ok"
            client.close()
        assert upstream.connections == 1
    finally:
        stop(loop, upstream, proxy)


def test_idle_upstream_connections_expire(loop: LoopThread) -> None:
    upstream, proxy = serve(loop, keep_alive_ok, upstream_idle_s=0.2)
    try:
        client = RawClient(proxy.port)
        client.request("GET", "/", SPACE_HOST)
        client.request("GET", "/", SPACE_HOST)
        assert upstream.connections == 1
        # Past upstream_idle_s the pooled connection is closed by the proxy (before uvicorn's 5 s would).
        assert loop.call(lambda: proxy.pool.idle_count(Upstream("127.0.0.1", upstream.port))) == 1
        assert wait_for(lambda: upstream.closed_connections == 1, timeout=3)
        assert loop.call(lambda: proxy.pool.idle_count(Upstream("127.0.0.1", upstream.port))) == 0
        client.request("GET", "/", SPACE_HOST)
        assert upstream.connections == 2
        client.close()
    finally:
        stop(loop, upstream, proxy)


def test_idle_connection_closed_by_the_upstream_is_not_reused(loop: LoopThread) -> None:
    async def answer_then_close(upstream: RawUpstream, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await upstream.read_head(reader)
        w.write(OK)  # keep-alive by the headers, but the server closes right after (its idle timeout)
        await w.drain()

    upstream, proxy = serve(loop, answer_then_close)
    try:
        client = RawClient(proxy.port)
        for _ in range(3):
            assert client.request("GET", "/", SPACE_HOST).status == 200
            time.sleep(0.05)
        assert upstream.connections == 3
        client.close()
    finally:
        stop(loop, upstream, proxy)


async def hang_up_on_second_request(
    upstream: RawUpstream, reader: asyncio.StreamReader, w: asyncio.StreamWriter
) -> None:
    """Answers one request, then drops the next one unanswered: the close race of a keep-alive timeout."""
    await upstream.read_head(reader)
    w.write(OK)
    await w.drain()
    await upstream.read_head(reader)


def test_idempotent_request_is_retried_once_on_a_fresh_connection(loop: LoopThread) -> None:
    upstream, proxy = serve(loop, hang_up_on_second_request)
    try:
        client = RawClient(proxy.port)
        assert client.request("GET", "/one", SPACE_HOST).status == 200
        reply = client.request("GET", "/two", SPACE_HOST)
        assert reply.status == 200 and reply.body == b"ok"
        assert upstream.connections == 2
        assert bytes(upstream.received).count(b"GET /two") == 2  # sent on the stale one, then on the fresh one
        client.close()
    finally:
        stop(loop, upstream, proxy)


def test_request_with_a_body_is_not_retried(loop: LoopThread) -> None:
    upstream, proxy = serve(loop, hang_up_on_second_request)
    try:
        client = RawClient(proxy.port)
        assert client.request("GET", "/one", SPACE_HOST).status == 200
        reply = client.request("POST", "/two", SPACE_HOST, body=b"abc")
        assert reply.status == 502
        assert reply.header("x-error-code") == "BadGateway"
        assert upstream.connections == 1
        client.close()
    finally:
        stop(loop, upstream, proxy)


def test_connection_close_from_the_upstream_is_not_pooled(loop: LoopThread) -> None:
    async def closing(upstream: RawUpstream, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await upstream.read_head(reader)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await w.drain()
        await asyncio.sleep(1)  # keeps the socket open: only the header says "don't reuse"

    upstream, proxy = serve(loop, closing)
    try:
        client = RawClient(proxy.port)
        for _ in range(2):
            reply = client.request("GET", "/", SPACE_HOST)
            assert reply.status == 200
            assert reply.header("connection") is None  # the upstream's hop-by-hop header is not relayed
        assert upstream.connections == 2
        client.close()
    finally:
        stop(loop, upstream, proxy)
