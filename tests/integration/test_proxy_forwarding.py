"""The proxy in front of a real uvicorn app: header rules on every request, routing answers, activity counts, unix
sockets."""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from test_proxy_harness import (
    PLATFORM_HOST,
    SPACE_HOST,
    AppState,
    LoopThread,
    RawClient,
    counts,
    make_app,
    platform_route,
    space_route,
    start_proxy,
    start_uvicorn,
    static_resolver,
    stop_uvicorn,
    uvicorn_port,
    wait_for,
)

from spacehub.proxy import ProxyServer, Route, Upstream
from spacehub.proxy.activity import RequestCounter
from spacehub.proxy.errors import ProxyError

pytestmark = pytest.mark.timeout(60)


@dataclass
class Env:
    loop: LoopThread
    state: AppState
    upstream: Upstream
    proxy: ProxyServer
    activity: RequestCounter

    def client(self) -> RawClient:
        return RawClient(self.proxy.port)


@pytest.fixture(params=["uvloop", "asyncio"])
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    loop = LoopThread(request.param)
    state = AppState()
    server, task = loop.run(start_uvicorn(make_app(state)))
    upstream = Upstream("127.0.0.1", uvicorn_port(server))
    resolver = static_resolver(
        {
            SPACE_HOST: space_route(upstream, space_id=7),
            PLATFORM_HOST: platform_route(upstream),
            "gone.space.localhost": Route(
                None,
                status=404,
                body=b'{"error": "no such space"}',
                extra_headers=(("X-Error-Code", "RepoNotFound"),),
            ),
            "dead.space.localhost": space_route(Upstream("127.0.0.1", 1), space_id=9),
        }
    )
    activity = RequestCounter()
    proxy = loop.run(start_proxy(resolver, activity=activity))
    yield Env(loop, state, upstream, proxy, activity)
    loop.run(proxy.close())
    loop.run(stop_uvicorn(server, task))
    loop.close()


def headers_seen(reply_json: dict[str, object]) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    for name, value in reply_json["headers"]:  # type: ignore[attr-defined]
        seen.setdefault(name.lower(), []).append(value)
    return seen


FORGED = [
    ("X-Forwarded-For", "6.6.6.6"),
    ("X-Forwarded-Host", "evil.example"),
    ("X-Forwarded-Proto", "https"),
    ("Forwarded", "for=6.6.6.6;host=evil.example"),
    ("X-Real-IP", "6.6.6.6"),
    ("X_Forwarded_For", "6.6.6.6"),
]


def test_forwarding_headers_are_set_on_every_request_of_a_keep_alive_connection(env: Env) -> None:
    client = env.client()
    host = f"{SPACE_HOST}:{env.proxy.port}"
    ports = set()
    for path in ("/echo?first", "/echo?second", "/echo?third"):
        reply = client.request("GET", path, host, FORGED + [("Keep-Alive", "timeout=5"), ("Connection", "keep-alive")])
        assert reply.status == 200
        assert not reply.will_close
        seen = headers_seen(reply.json())
        assert seen["x-forwarded-for"] == ["127.0.0.1"]
        assert seen["x-forwarded-host"] == [host]  # with the port, as the client sent it
        assert seen["x-forwarded-proto"] == ["http"]
        assert seen["host"] == [host]
        for dropped in ("forwarded", "x-real-ip", "x_forwarded_for", "keep-alive", "connection"):
            assert dropped not in seen, dropped
        ports.add(reply.json()["client_port"])
    assert [r["query"] for r in env.state.requests] == ["first", "second", "third"]
    assert len(ports) == 1  # one pooled upstream connection served all three
    client.close()


def test_scheme_setting_is_what_the_app_sees_as_proto(env: Env) -> None:
    resolver = static_resolver({SPACE_HOST: space_route(env.upstream)})
    https_proxy = env.loop.run(start_proxy(resolver, scheme="https"))
    try:
        client = RawClient(https_proxy.port)
        seen = headers_seen(client.request("GET", "/echo", SPACE_HOST, [("X-Forwarded-Proto", "http")]).json())
        assert seen["x-forwarded-proto"] == ["https"]
        client.close()
    finally:
        env.loop.run(https_proxy.close())


CREDENTIALS = [
    ("Authorization", "Bearer sh_secret_platform_token"),
    ("X-HF-Authorization", "Bearer hf_visitor_token"),
    ("Cookie", "theme=dark; spacehub_session=SESSION; lang=en"),
]


def test_space_requests_never_carry_platform_credentials(env: Env) -> None:
    client = env.client()
    for _ in range(2):  # the second request on the connection is rewritten too
        seen = headers_seen(client.request("GET", "/echo", SPACE_HOST, CREDENTIALS).json())
        assert "authorization" not in seen
        assert "x-hf-authorization" not in seen
        assert seen["cookie"] == ["theme=dark; lang=en"]
    client.close()


def test_space_requests_keep_app_credentials(env: Env) -> None:
    client = env.client()
    app_auth = [("Authorization", "Bearer app-own-token"), ("Cookie", "spacehub_session=S")]
    seen = headers_seen(client.request("GET", "/echo", SPACE_HOST, app_auth).json())
    assert seen["authorization"] == ["Bearer app-own-token"]
    assert "cookie" not in seen  # only the platform cookie was there
    client.close()


def test_platform_requests_keep_credentials(env: Env) -> None:
    client = env.client()
    seen = headers_seen(client.request("GET", "/echo", PLATFORM_HOST, CREDENTIALS).json())
    assert seen["authorization"] == ["Bearer sh_secret_platform_token"]
    assert seen["x-hf-authorization"] == ["Bearer hf_visitor_token"]
    assert seen["cookie"] == ["theme=dark; spacehub_session=SESSION; lang=en"]
    client.close()


def test_space_cookies_become_host_only(env: Env) -> None:
    client = env.client()
    cookies = client.request("GET", "/cookies", SPACE_HOST).all("set-cookie")
    assert cookies == ["theme=dark; Path=/; HttpOnly", "plain=1; Path=/", "odd=2; path=/; Secure"]
    platform_cookies = client.request("GET", "/cookies", PLATFORM_HOST).all("set-cookie")
    assert "theme=dark; Domain=.space.localhost; Path=/; HttpOnly" in platform_cookies
    client.close()


def test_local_route_is_answered_by_the_proxy(env: Env) -> None:
    client = env.client()
    reply = client.request("GET", "/anything", "gone.space.localhost")
    assert reply.status == 404
    assert reply.json() == {"error": "no such space"}
    assert reply.header("content-type") == "application/json"
    assert reply.header("x-error-code") == "RepoNotFound"
    unknown = client.request("GET", "/", "elsewhere.example:8000")  # the resolver's default: 421, empty body
    assert unknown.status == 421
    assert unknown.json() == {"error": "Misdirected Request"}
    assert env.state.requests == []
    assert counts(env.activity) == {}  # nothing reached an app
    client.close()


def test_resolver_gets_the_host_without_port_lower_cased(env: Env) -> None:
    seen: list[str] = []

    async def resolver(host: str, headers: list[tuple[bytes, bytes]]) -> Route:
        seen.append(host)
        return Route(None, status=404)

    proxy = env.loop.run(start_proxy(resolver))
    try:
        client = RawClient(proxy.port)
        for host in ("Alice-Demo.Space.Localhost:8000", "[::1]:8000", "localhost"):
            assert client.request("GET", "/", host).status == 404
        assert seen == ["alice-demo.space.localhost", "[::1]", "localhost"]
        client.close()
    finally:
        env.loop.run(proxy.close())


def test_upstream_down_is_a_json_502_and_the_connection_lives_on(env: Env) -> None:
    client = env.client()
    reply = client.request("GET", "/", "dead.space.localhost")
    assert reply.status == 502
    assert "cannot connect" in reply.json()["error"]
    assert reply.header("x-error-code") == "BadGateway"
    assert client.request("GET", "/echo", SPACE_HOST).status == 200  # same client connection
    # Each request counts as ended once its answer is out, the refused one too.
    assert wait_for(lambda: counts(env.activity) == {9: (0, 1), 7: (0, 1)})
    client.close()


def test_activity_counts_each_space_request_both_ways_of_forwarding(env: Env) -> None:
    client = env.client()
    client.request("GET", "/echo", SPACE_HOST)  # the callback path
    client.request("POST", "/echo", SPACE_HOST, body=b"x" * 1000)  # the task that streams a body
    client.request("GET", "/echo", PLATFORM_HOST)  # not a space: not counted
    assert wait_for(lambda: counts(env.activity) == {7: (0, 2)})
    client.close()


def test_request_bodies_with_length_and_chunked(env: Env) -> None:
    client = env.client()
    reply = client.request("POST", "/echo", SPACE_HOST, body=b"hello world")
    assert reply.json()["body_size"] == 11
    client.send(
        f"POST /echo HTTP/1.1\r\nHost: {SPACE_HOST}\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: dropped\r\n\r\n".encode()
    )
    chunked = client.response()
    assert chunked.status == 200
    body = chunked.json()
    assert body["body_size"] == 11
    assert body["body_sha256"] == reply.json()["body_sha256"]
    assert ["transfer-encoding", "chunked"] in body["headers"]
    client.close()


def test_head_request_then_another_on_the_same_connection(env: Env) -> None:
    client = env.client()
    head = client.request("HEAD", "/echo", SPACE_HOST)
    assert head.status == 200 and head.body == b""
    assert int(head.header("content-length") or 0) > 0
    assert client.request("GET", "/echo?after-head", SPACE_HOST).json()["query"] == "after-head"
    client.close()


def test_pipelined_requests_are_answered_in_order(env: Env) -> None:
    client = env.client()
    client.send(
        "".join(
            f"GET /echo?n={n} HTTP/1.1\r\nHost: {SPACE_HOST}\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n" for n in range(3)
        ).encode()
    )
    for n in range(3):
        reply = client.response()
        assert reply.json()["query"] == f"n={n}"
        assert headers_seen(reply.json())["x-forwarded-for"] == ["127.0.0.1"]
    client.close()


def test_http10_client_gets_a_closing_answer(env: Env) -> None:
    client = env.client()
    client.send(f"GET /sse?n=2&gap=0 HTTP/1.0\r\nHost: {SPACE_HOST}\r\n\r\n".encode())
    reply = client.response()
    assert reply.status == 200
    assert reply.body.count(b"data:") == 2
    assert reply.header("transfer-encoding") is None  # no chunking towards HTTP/1.0
    assert client.closed_by_peer()
    client.close()


def test_connection_close_from_the_client_is_honoured(env: Env) -> None:
    client = env.client()
    reply = client.request("GET", "/echo", SPACE_HOST, [("Connection", "close")])
    assert reply.status == 200 and reply.header("connection") == "close"
    assert client.closed_by_peer()
    client.close()


def test_unix_socket_upstream(env: Env) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "app.sock")
        state = AppState()
        server, task = env.loop.run(start_uvicorn(make_app(state), uds=path))
        resolver = static_resolver({SPACE_HOST: space_route(Upstream(unix_path=path))})
        proxy = env.loop.run(start_proxy(resolver))
        try:
            client = RawClient(proxy.port)
            for _ in range(2):
                reply = client.request("POST", "/echo", SPACE_HOST, CREDENTIALS, body=b"over a unix socket")
                assert reply.status == 200
                seen = headers_seen(reply.json())
                assert reply.json()["body_size"] == 18
                assert seen["x-forwarded-for"] == ["127.0.0.1"]
                assert "authorization" not in seen
            assert len(state.requests) == 2
            client.close()
        finally:
            env.loop.run(proxy.close())
            env.loop.run(stop_uvicorn(server, task))


def test_a_failing_resolver_is_answered_and_the_server_lives_on(env: Env) -> None:
    async def resolver(host: str, headers: list[tuple[bytes, bytes]]) -> Route:
        if host == "missing.space.localhost":
            raise ProxyError("no space here", status=404, code="RepoNotFound")
        if host == "broken.space.localhost":
            raise RuntimeError("route table unreachable")
        return space_route(env.upstream)

    proxy = env.loop.run(start_proxy(resolver))
    try:
        client = RawClient(proxy.port)
        missing = client.request("GET", "/", "missing.space.localhost")
        assert (missing.status, missing.header("x-error-code"), missing.json()) == (
            404,
            "RepoNotFound",
            {"error": "no space here"},
        )
        broken = client.request("GET", "/", "broken.space.localhost")
        assert broken.status == 500 and broken.header("x-error-code") == "InternalError"
        assert "route table unreachable" not in broken.body.decode()  # internals stay in the log
        assert client.request("GET", "/echo", SPACE_HOST).status == 200
        client.close()
    finally:
        env.loop.run(proxy.close())


def test_idle_client_connections_are_closed_after_the_head_timeout(env: Env) -> None:
    env.proxy.head_timeout_s = 0.3
    idle = env.client()
    assert idle.request("GET", "/echo", SPACE_HOST).status == 200
    slow = env.client()
    slow.send(f"GET /echo HTTP/1.1\r\nHost: {SPACE_HOST}\r\n".encode())  # a head that never ends
    assert idle.closed_by_peer(timeout=5)
    assert slow.closed_by_peer(timeout=5)
    assert len(env.state.requests) == 1
    idle.close()
    slow.close()


def test_a_head_sent_a_byte_at_a_time_does_not_move_its_deadline(env: Env) -> None:
    env.proxy.head_timeout_s = 0.5
    slow = env.client()
    slow.send(f"GET /echo HTTP/1.1\r\nHost: {SPACE_HOST}\r\nX-Slow: ".encode())
    slow.sock.settimeout(0)  # the checks below must not wait
    slow.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # each byte goes out at once
    closed_while_trickling = False
    for _ in range(50):  # 5 s of trickle, each byte well within the timeout of the one before
        try:
            slow.send(b"a")
            time.sleep(0.1)
            if slow.sock.recv(1, socket.MSG_PEEK) == b"":
                closed_while_trickling = True
                break
        except BlockingIOError:
            continue
        except OSError:
            closed_while_trickling = True
            break
    assert closed_while_trickling
    assert env.state.requests == []
    slow.close()


def test_a_resolver_that_accepts_the_target_gets_it(env: Env) -> None:
    targets: list[bytes] = []

    class TargetResolver:
        accepts_target = True

        async def __call__(self, host: str, headers: list[tuple[bytes, bytes]], target: bytes = b"/") -> Route:
            targets.append(target)
            return Route(None, status=303, body=b"{}", extra_headers=(("Location", "/clean"),))

    proxy = env.loop.run(start_proxy(TargetResolver()))
    try:
        client = RawClient(proxy.port)
        reply = client.request("GET", "/page?__sign=abc", SPACE_HOST)
        assert reply.status == 303 and reply.header("location") == "/clean"
        assert targets == [b"/page?__sign=abc"]
        client.close()
    finally:
        env.loop.run(proxy.close())
