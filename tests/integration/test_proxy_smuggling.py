"""Strict parsing: ambiguous or malformed requests get 4xx, the connection closes, and the upstream sees nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from test_proxy_harness import (
    SPACE_HOST,
    LoopThread,
    RawClient,
    RawUpstream,
    record_everything,
    space_route,
    start_proxy,
    static_resolver,
    wait_for,
)

from spacehub.proxy import ProxyServer, Upstream

pytestmark = pytest.mark.timeout(60)

MAX_HEADER_BYTES = 4096


@dataclass
class Env:
    loop: LoopThread
    upstream: RawUpstream
    proxy: ProxyServer

    def send_raw(self, data: bytes) -> RawClient:
        client = RawClient(self.proxy.port)
        client.send(data)
        return client


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    loop = LoopThread("uvloop")
    upstream = RawUpstream(record_everything)
    port = loop.run(upstream.start())
    resolver = static_resolver({}, default=space_route(Upstream("127.0.0.1", port)))
    proxy = loop.run(start_proxy(resolver, max_header_bytes=MAX_HEADER_BYTES))
    yield Env(loop, upstream, proxy)
    loop.run(proxy.close())
    loop.run(upstream.stop())
    loop.close()


@pytest.fixture(autouse=True)
def fresh_recording(env: Env) -> None:
    env.loop.call(env.upstream.received.clear)


H = f"Host: {SPACE_HOST}\r\n"

REJECTED = {
    "cl-then-te": f"POST / HTTP/1.1\r\n{H}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-then-cl": f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
    "double-cl-same": f"POST / HTTP/1.1\r\n{H}Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    "double-cl-different": f"POST / HTTP/1.1\r\n{H}Content-Length: 3\r\nContent-Length: 30\r\n\r\nabc",
    "cl-list": f"POST / HTTP/1.1\r\n{H}Content-Length: 3, 3\r\n\r\nabc",
    "cl-signed": f"POST / HTTP/1.1\r\n{H}Content-Length: +3\r\n\r\nabc",
    "te-gzip-chunked": f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "te-chunked-identity": f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    "te-identity": f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: identity\r\n\r\nabc",
    "te-xchunked": f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "te-twice": f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-obs-fold": f"POST / HTTP/1.1\r\n{H}Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
    "te-space-before-colon": f"POST / HTTP/1.1\r\n{H}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    "control-char-in-value": f"GET / HTTP/1.1\r\n{H}X-Note: a\x01b\r\n\r\n",
    "nul-in-value": f"GET / HTTP/1.1\r\n{H}X-Note: a\x00b\r\n\r\n",
    "space-in-name": f"GET / HTTP/1.1\r\n{H}X Note: a\r\n\r\n",
    "non-ascii-name": f"GET / HTTP/1.1\r\n{H}X-N\xf6te: a\r\n\r\n",
    "bare-lf": f"GET / HTTP/1.1\n{H}\n",
    "bad-chunk-size": f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    "absolute-form": f"GET http://evil.example/ HTTP/1.1\r\n{H}\r\n",
    "two-hosts": f"GET / HTTP/1.1\r\n{H}Host: evil.example\r\n\r\n",
    "no-host": "GET / HTTP/1.1\r\nX-Note: a\r\n\r\n",
    "bad-host": f"GET / HTTP/1.1\r\nHost: {SPACE_HOST}/evil\r\n\r\n",
    "http2-preface": "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "upgrade-with-body": (
        f"GET / HTTP/1.1\r\n{H}Connection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 3\r\n\r\nabc"
    ),
}


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_ambiguous_or_malformed_request_gets_400_and_never_reaches_the_upstream(env: Env, name: str) -> None:
    client = env.send_raw(REJECTED[name].encode("latin-1"))
    reply = client.response()
    assert reply.status == 400, reply.body
    assert reply.header("connection") == "close"
    assert reply.header("x-error-code") == "BadRequest"
    assert "error" in reply.json()
    assert client.closed_by_peer()
    client.close()
    assert bytes(env.upstream.received) == b""


def test_connect_is_refused(env: Env) -> None:
    client = env.send_raw(f"CONNECT evil.example:443 HTTP/1.1\r\n{H}\r\n".encode())
    reply = client.response()
    assert reply.status == 405
    assert client.closed_by_peer()
    client.close()
    assert bytes(env.upstream.received) == b""


def test_smuggled_request_behind_a_valid_one_is_rejected(env: Env) -> None:
    valid = f"GET /first HTTP/1.1\r\n{H}\r\n"
    smuggled = f"POST /second HTTP/1.1\r\n{H}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    client = env.send_raw((valid + smuggled).encode())
    assert client.response().status == 200
    assert client.response().status == 400
    assert client.closed_by_peer()
    client.close()
    received = bytes(env.upstream.received)
    assert received.startswith(b"GET /first HTTP/1.1\r\n")
    assert b"/second" not in received


def test_oversized_headers_get_431(env: Env) -> None:
    client = env.send_raw(f"GET / HTTP/1.1\r\n{H}X-Big: {'a' * MAX_HEADER_BYTES}\r\n\r\n".encode())
    reply = client.response()
    assert reply.status == 431
    assert reply.header("x-error-code") == "RequestHeaderFieldsTooLarge"
    client.close()
    assert bytes(env.upstream.received) == b""


def test_never_ending_head_gets_431(env: Env) -> None:
    client = env.send_raw(f"GET / HTTP/1.1\r\n{H}X-Big: ".encode())
    client.send(b"a" * (MAX_HEADER_BYTES * 4))  # no end of line, ever
    assert client.response().status == 431
    client.close()
    assert bytes(env.upstream.received) == b""


def test_many_small_headers_add_up_to_431(env: Env) -> None:
    headers = "".join(f"X-H{i}: {'v' * 40}\r\n" for i in range(200))
    client = env.send_raw(f"GET / HTTP/1.1\r\n{H}{headers}\r\n".encode())
    assert client.response().status == 431
    client.close()


def test_bad_chunk_after_the_head_was_forwarded_cuts_the_upstream_request(env: Env) -> None:
    """The head went upstream before the body went bad: the upstream only ever sees an unfinished request."""

    async def listen_only(upstream: RawUpstream, reader: asyncio.StreamReader, _: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            upstream.received += data

    silent = RawUpstream(listen_only)
    port = env.loop.run(silent.start())
    proxy = env.loop.run(start_proxy(static_resolver({}, default=space_route(Upstream("127.0.0.1", port)))))
    try:
        client = RawClient(proxy.port)
        client.send(f"POST /late HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n".encode())
        assert wait_for(lambda: b"/late" in bytes(silent.received))
        client.send(b"5\r\nhello\r\nzz\r\n")
        reply = client.response()
        assert reply.status == 400
        assert client.closed_by_peer()
        client.close()
        assert wait_for(lambda: silent.closed_connections == 1)  # the upstream connection was cut
        received = bytes(silent.received)
        assert received.endswith(b"\r\n\r\n5\r\nhello\r\n")  # never a terminated body
    finally:
        env.loop.run(proxy.close())
        env.loop.run(silent.stop())


def test_valid_request_still_passes(env: Env) -> None:
    client = env.send_raw(f"POST /ok HTTP/1.1\r\n{H}Transfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".encode())
    assert client.response().status == 200
    client.close()
    assert wait_for(lambda: b"3\r\nabc\r\n0\r\n\r\n" in bytes(env.upstream.received))
