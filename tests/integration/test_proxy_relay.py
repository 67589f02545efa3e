"""The callback path (`relay.Relay`) for requests without a body: the resolver's synchronous `resolve_cached`,
the activity counter, pipelining, and the response shapes a relay must re-frame."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from test_proxy_harness import (
    SPACE_HOST,
    AppState,
    LoopThread,
    RawClient,
    RawUpstream,
    make_app,
    space_route,
    start_proxy,
    start_uvicorn,
    stop_uvicorn,
    uvicorn_port,
)

from spacehub.proxy import ProxyServer, Route, Upstream
from spacehub.proxy.activity import RequestCounter

pytestmark = pytest.mark.timeout(60)


@dataclass
class CachedResolver:
    """Knows `SPACE_HOST` at once (`resolve_cached`); anything else takes the async call."""

    route: Route
    cached_calls: int = 0
    async_calls: list[str] = field(default_factory=list)

    def resolve_cached(self, host: str, headers: list[tuple[bytes, bytes]]) -> Route | None:
        self.cached_calls += 1
        return self.route if host == SPACE_HOST else None

    async def __call__(self, host: str, headers: list[tuple[bytes, bytes]]) -> Route:
        self.async_calls.append(host)
        await asyncio.sleep(0)
        return self.route if host.endswith(".space.localhost") else Route(None, status=421)


@dataclass
class Env:
    loop: LoopThread
    state: AppState
    resolver: CachedResolver
    proxy: ProxyServer

    def client(self) -> RawClient:
        return RawClient(self.proxy.port)


@pytest.fixture(params=["uvloop", "asyncio"])
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    loop = LoopThread(request.param)
    state = AppState()
    server, task = loop.run(start_uvicorn(make_app(state)))
    resolver = CachedResolver(space_route(Upstream("127.0.0.1", uvicorn_port(server)), space_id=5))
    proxy = loop.run(start_proxy(resolver))
    yield Env(loop, state, resolver, proxy)
    loop.run(proxy.close())
    loop.run(stop_uvicorn(server, task))
    loop.close()


def headers_seen(reply_json: dict[str, object]) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    for name, value in reply_json["headers"]:  # type: ignore[attr-defined]
        seen.setdefault(name.lower(), []).append(value)
    return seen


CREDENTIALS = [
    ("Authorization", "Bearer sh_secret"),
    ("X-HF-Authorization", "Bearer sh_secret"),
    ("Cookie", "spacehub_session=abc; theme=dark"),
    ("X-Forwarded-For", "6.6.6.6"),
]


def test_a_cached_route_serves_every_request_without_the_async_resolver(env: Env) -> None:
    client = env.client()
    for query in ("a", "b", "c"):
        reply = client.request("GET", f"/echo?{query}", SPACE_HOST, CREDENTIALS)
        assert reply.status == 200 and not reply.will_close
        seen = headers_seen(reply.json())
        assert "authorization" not in seen and "x-hf-authorization" not in seen
        assert seen["cookie"] == ["theme=dark"]
        assert seen["x-forwarded-for"] == ["127.0.0.1"]
    client.close()
    assert env.resolver.cached_calls == 3
    assert env.resolver.async_calls == []
    assert [r["query"] for r in env.state.requests] == ["a", "b", "c"]


def test_a_host_the_cache_does_not_know_is_resolved_by_the_async_call(env: Env) -> None:
    client = env.client()
    reply = client.request("GET", "/echo", "other.space.localhost", CREDENTIALS)
    assert reply.status == 200
    assert "authorization" not in headers_seen(reply.json())
    assert client.request("GET", "/echo", "elsewhere.example").status == 421
    client.close()
    assert env.resolver.async_calls == ["other.space.localhost", "elsewhere.example"]


def test_pipelined_requests_are_answered_in_order(env: Env) -> None:
    client = env.client()
    client.send(b"".join(f"GET /echo?{n} HTTP/1.1\r\nHost: {SPACE_HOST}\r\n\r\n".encode() for n in range(5)))
    queries = [client.response().json()["query"] for _ in range(5)]
    assert queries == ["0", "1", "2", "3", "4"]
    client.close()


def test_a_request_with_a_body_after_relayed_ones_on_the_same_connection(env: Env) -> None:
    client = env.client()
    assert client.request("GET", "/echo", SPACE_HOST).status == 200
    reply = client.request("POST", "/echo", SPACE_HOST, body=b"hello")
    assert reply.status == 200 and reply.json()["body_size"] == 5
    assert client.request("GET", "/echo?after", SPACE_HOST).json()["query"] == "after"
    client.close()


# Upstreams that answer in shapes uvicorn rarely produces


def _serve_raw(loop: LoopThread, answer: bytes, **options: object) -> tuple[RawUpstream, ProxyServer]:
    async def handler(upstream: RawUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await upstream.read_head(reader)
            writer.write(answer)
            await writer.drain()

    upstream = RawUpstream(handler)
    port = loop.run(upstream.start())
    resolver = CachedResolver(space_route(Upstream("127.0.0.1", port)))
    return upstream, loop.run(start_proxy(resolver, **options))


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    thread = LoopThread("uvloop")
    yield thread
    thread.close()


def test_a_head_answer_keeps_its_length_and_the_upstream_connection(loop: LoopThread) -> None:
    upstream, proxy = _serve_raw(loop, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
    try:
        client = RawClient(proxy.port)
        for _ in range(3):
            reply = client.request("HEAD", "/", SPACE_HOST)
            assert reply.status == 200 and reply.header("content-length") == "10" and reply.body == b""
        client.close()
        assert upstream.connections == 1
    finally:
        loop.run(proxy.close())
        loop.run(upstream.stop())


def test_head_and_get_answers_alternate_on_one_upstream_connection(loop: LoopThread) -> None:
    # The response parser is kept per upstream connection: after a HEAD answer (which llhttp would read as
    # waiting for its advertised body) the next GET on that connection must still be read from its first byte.
    async def handler(upstream: RawUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await upstream.read_head(reader)
            body = b"" if head.startswith(b"HEAD ") else b"0123456789"
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n" + body)
            await writer.drain()

    upstream = RawUpstream(handler)
    port = loop.run(upstream.start())
    proxy = loop.run(start_proxy(CachedResolver(space_route(Upstream("127.0.0.1", port)))))
    try:
        client = RawClient(proxy.port)
        for method in ("GET", "HEAD", "GET", "GET", "HEAD", "HEAD", "GET"):
            reply = client.request(method, "/", SPACE_HOST)
            assert reply.status == 200 and reply.header("content-length") == "10"
            assert reply.body == (b"" if method == "HEAD" else b"0123456789"), method
        client.close()
        assert upstream.connections == 1
    finally:
        loop.run(proxy.close())
        loop.run(upstream.stop())


def test_the_request_counter_sees_each_request_start_and_end(loop: LoopThread) -> None:
    counter = RequestCounter()  # what `spacehub serve` passes as `activity=`
    upstream, proxy = _serve_raw(loop, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", activity=counter)
    try:
        client = RawClient(proxy.port)
        for path in ("/", "/gradio_api/heartbeat/abc", "/gradio_api/info"):
            assert client.request("GET", path, SPACE_HOST).body == b"ok"
        client.close()
        space_id = space_route(Upstream("127.0.0.1", 1)).space_id
        assert space_id is not None
        assert list(counter.spaces) == [space_id]  # the heartbeat counts for nothing, not even a record
        count = counter.spaces[space_id]
        assert count.in_flight == 0  # every request ended
        assert count.last_idle > 0 and count.last_active > 0
        assert counter.take_dirty() == {space_id}
        assert counter.take_dirty() == set()
    finally:
        loop.run(proxy.close())
        loop.run(upstream.stop())


@pytest.mark.parametrize("status", [204, 304])
def test_bodyless_statuses_end_at_their_head(loop: LoopThread, status: int) -> None:
    upstream, proxy = _serve_raw(loop, f"HTTP/1.1 {status} X\r\nETag: \"v1\"\r\n\r\n".encode())
    try:
        client = RawClient(proxy.port)
        for _ in range(2):
            reply = client.request("GET", "/", SPACE_HOST)
            assert reply.status == status and reply.body == b"" and reply.header("etag") == '"v1"'
            assert reply.header("transfer-encoding") is None
        client.close()
        assert upstream.connections == 1
    finally:
        loop.run(proxy.close())
        loop.run(upstream.stop())


def test_early_hints_are_passed_on_before_the_final_response(loop: LoopThread) -> None:
    answer = (
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    )
    upstream, proxy = _serve_raw(loop, answer)
    try:
        client = RawClient(proxy.port)
        client.send(f"GET / HTTP/1.1\r\nHost: {SPACE_HOST}\r\n\r\n".encode())
        assert client.file.readline() == b"HTTP/1.1 103 Early Hints\r\n"
        assert client.file.readline() == b"Link: </style.css>; rel=preload\r\n"
        assert client.file.readline() == b"\r\n"
        assert client.response().body == b"ok"
        client.close()
    finally:
        loop.run(proxy.close())
        loop.run(upstream.stop())


def test_switching_protocols_that_nobody_asked_for_is_a_502(loop: LoopThread) -> None:
    upstream, proxy = _serve_raw(loop, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
    try:
        client = RawClient(proxy.port)
        reply = client.request("GET", "/", SPACE_HOST)
        assert reply.status == 502 and reply.header("x-error-code") == "BadGateway"
        client.close()
    finally:
        loop.run(proxy.close())
        loop.run(upstream.stop())


def test_an_oversized_response_head_is_a_502(loop: LoopThread) -> None:
    answer = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 5000 + b"\r\nContent-Length: 2\r\n\r\nok"
    upstream, proxy = _serve_raw(loop, answer, max_header_bytes=4096)
    try:
        client = RawClient(proxy.port)
        reply = client.request("GET", "/", SPACE_HOST)
        assert reply.status == 502 and b"too large" in reply.body
        client.close()
    finally:
        loop.run(proxy.close())
        loop.run(upstream.stop())


def test_bytes_after_a_complete_response_keep_that_connection_out_of_the_pool(loop: LoopThread) -> None:
    upstream, proxy = _serve_raw(loop, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\r\n")
    try:
        client = RawClient(proxy.port)
        assert client.request("GET", "/", SPACE_HOST).body == b"ok"
        assert client.request("GET", "/", SPACE_HOST).body == b"ok"
        client.close()
        assert upstream.connections == 2  # the out-of-step connection was not used again
    finally:
        loop.run(proxy.close())
        loop.run(upstream.stop())


def test_a_chunked_response_to_an_http10_client_runs_until_close(loop: LoopThread) -> None:
    upstream, proxy = _serve_raw(loop, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    try:
        client = RawClient(proxy.port)
        client.send(f"GET / HTTP/1.0\r\nHost: {SPACE_HOST}\r\nConnection: keep-alive\r\n\r\n".encode())
        reply = client.response()
        assert reply.body == b"hello" and reply.header("transfer-encoding") is None
        assert reply.header("connection") == "close"
        assert client.closed_by_peer()
        client.close()
        assert upstream.connections == 1
    finally:
        loop.run(proxy.close())
        loop.run(upstream.stop())


def test_a_plain_answer_is_passed_on_byte_for_byte(loop: LoopThread) -> None:
    # An app server's usual answer (a length, nothing hop-by-hop, no cookie): the upstream's own bytes, in the
    # upstream's spelling, are what the client gets, on one kept-alive upstream connection.
    answer = (
        b"HTTP/1.1 200 OK\r\ndate: Thu, 03 Dec 2026 14:00:00 GMT\r\ncontent-type: text/plain\r\n"
        b"content-length: 2\r\n\r\nok"
    )
    upstream, proxy = _serve_raw(loop, answer)
    try:
        client = RawClient(proxy.port)
        for _ in range(3):
            client.send(f"GET / HTTP/1.1\r\nHost: {SPACE_HOST}\r\n\r\n".encode())
            assert client.file.read(len(answer)) == answer
        client.close()
        assert upstream.connections == 1
    finally:
        loop.run(proxy.close())
        loop.run(upstream.stop())


@pytest.mark.parametrize(
    ("answer", "absent"),
    [
        (b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok", "keep-alive"),
        (b"HTTP/1.1 200 OK\r\nConnection: x-trace\r\nX-Trace: 1\r\nContent-Length: 2\r\n\r\nok", "x-trace"),
        (b"HTTP/1.1 200 OK\r\nProxy-Thing: 1\r\nContent-Length: 2\r\n\r\nok", "proxy-thing"),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", "connection"),
    ],
    ids=["hop-by-hop", "connection-listed", "proxy-prefixed", "http10-upstream"],
)
def test_an_answer_that_needs_a_change_is_rewritten(loop: LoopThread, answer: bytes, absent: str) -> None:
    upstream, proxy = _serve_raw(loop, answer)
    try:
        client = RawClient(proxy.port)
        client.send(f"GET / HTTP/1.1\r\nHost: {SPACE_HOST}\r\n\r\n".encode())
        assert client.file.readline() == b"HTTP/1.1 200 OK\r\n"
        lines = []
        while (line := client.file.readline()) != b"\r\n":
            lines.append(line)
        assert client.file.read(2) == b"ok"
        names = [line.split(b":", 1)[0].lower().decode() for line in lines]
        assert absent not in names and names.count("content-length") == 1
        client.close()
    finally:
        loop.run(proxy.close())
        loop.run(upstream.stop())


def test_a_cookie_of_an_app_is_made_host_only_and_a_trailing_line_break_is_not_passed_on(loop: LoopThread) -> None:
    # The Set-Cookie rewrite keeps the head from passing unchanged; bytes after the announced body (a stray line
    # break) keep the whole read from passing unchanged.
    for answer, expected_cookie in (
        (b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1; Domain=.space.localhost\r\nContent-Length: 2\r\n\r\nok", "a=1"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok\r\n", None),
    ):
        upstream, proxy = _serve_raw(loop, answer)
        try:
            client = RawClient(proxy.port)
            reply = client.request("GET", "/", SPACE_HOST)
            assert reply.status == 200 and reply.body == b"ok"
            assert reply.header("set-cookie") == expected_cookie
            assert client.request("GET", "/", SPACE_HOST).body == b"ok"  # nothing extra reached the client
            client.close()
        finally:
            loop.run(proxy.close())
            loop.run(upstream.stop())


PIN_LINES = b"Set-Cookie: spacehub-rev=abc123; Path=/; HttpOnly; SameSite=Lax\r\n"


@pytest.mark.parametrize("method", ["GET", "POST"], ids=["relay", "exchange"])
def test_added_lines_go_only_to_a_client_without_what_makes_them_needless(loop: LoopThread, method: str) -> None:
    # A route that pins clients to a revision adds its cookie line to answers for clients that lack the cookie;
    # a client that sends it back gets none: on the callback path, the upstream's own bytes (the unchanged-head
    # path); a request with a body (`Exchange`, which always renders its head) gets its answer without the line.
    answer = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok"

    async def handler(upstream: RawUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await upstream.read_head(reader)
            if b"Content-Length: 4" in head:
                await reader.readexactly(4)
            writer.write(answer)
            await writer.drain()

    upstream = RawUpstream(handler)
    port = loop.run(upstream.start())
    route = Route(Upstream("127.0.0.1", port), space_id=7, is_space=True, added_headers=PIN_LINES,
                  added_unless=b"=abc123")
    proxy = loop.run(start_proxy(CachedResolver(route)))
    body = b"data" if method == "POST" else b""
    extra = f"Content-Length: {len(body)}\r\n" if body else ""
    try:
        client = RawClient(proxy.port)
        first = client.request(method, "/", SPACE_HOST, body=body)
        assert first.status == 200 and first.body == b"ok"
        assert first.header("set-cookie") == "spacehub-rev=abc123; Path=/; HttpOnly; SameSite=Lax"
        for cookie in ("spacehub-rev=abc123", "theme=dark; spacehub-rev-framed=abc123"):
            client.send(f"{method} / HTTP/1.1\r\nHost: {SPACE_HOST}\r\nCookie: {cookie}\r\n{extra}\r\n".encode() + body)
            if method == "GET":
                assert client.file.read(len(answer)) == answer  # byte for byte: no cookie line, head not rewritten
            else:
                reply = client.response()
                assert reply.body == b"ok" and reply.header("set-cookie") is None, reply.headers
        stale = client.request(method, "/", SPACE_HOST, headers=[("Cookie", "spacehub-rev=old999")], body=body)
        assert stale.header("set-cookie") == "spacehub-rev=abc123; Path=/; HttpOnly; SameSite=Lax"
        client.close()
    finally:
        loop.run(proxy.close())
        loop.run(upstream.stop())
