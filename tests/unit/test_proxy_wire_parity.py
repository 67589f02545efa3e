"""The compiled wire layer (`_wire`, Cython over llhttp) against the reference (`wire`, Python over httptools).

Both parse, check and rewrite every message the proxy handles; the compiled one is what runs wherever it was
built, the reference is the specification. Here both get the same bytes, fed in the same pieces, and must tell
their owners the same things (heads field by field, body pieces, ends) and refuse the same messages with the
same error; and both must rewrite the same heads into the same bytes. A hand-written corpus covers the rules
(smuggling, framing, credentials, cookies, Connection-listed headers, upgrades, oversized heads); Hypothesis adds
generated messages, split at generated places.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spacehub.proxy import wire as reference
from spacehub.proxy.errors import ProxyError
from spacehub.proxy.wire import BODY_CHUNKED, BODY_LENGTH, BODY_NONE, BODY_UNTIL_CLOSE, CredentialRules


def _compiled() -> ModuleType:
    if os.environ.get("SPACEHUB_PURE_PYTHON") == "1":  # the deliberate plain build: nothing to compare with
        pytest.skip("SPACEHUB_PURE_PYTHON=1 builds no compiled wire layer", allow_module_level=True)
    from spacehub.proxy import _wire  # `make install` builds it: a missing build fails here, never skips

    return _wire


compiled = _compiled()
RULES = CredentialRules(token_prefix=b"sh_", session_cookie=b"spacehub_session")
LIMIT = 1024


class Recorder:
    """An owner that writes down what a parser tells it, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.heads: list[Any] = []

    def on_message_begin(self) -> None:
        self.events.append(("begin",))

    def on_head(self, head: Any) -> None:
        self.heads.append(head)
        self.events.append(("head", describe(head)))

    def on_body(self, body: bytes) -> None:
        self.events.append(("body", body))

    def on_message_complete(self) -> None:
        self.events.append(("complete",))


def describe(head: Any) -> tuple[Any, ...]:
    if hasattr(head, "method"):
        return (
            head.method,
            head.target,
            head.http_version,
            head.headers,
            head.host,
            head.content_length,
            head.chunked,
            head.keep_alive,
            head.upgrade,
            head.connection_options,
            head.has_body,
            head.plain,
            head.idempotent,
            repr(head),
        )
    return (
        head.status,
        head.reason,
        head.headers,
        head.content_length,
        head.chunked,
        head.keep_alive,
        head.connection_options,
        head.informational,
        head.bodyless,
        repr(head),
    )


def run(implementation: ModuleType, request: bool, pieces: list[bytes]) -> tuple[list[tuple[Any, ...]], list[Any]]:
    """Feed the pieces in turn; the record: events, offsets returned, and the error that stopped it (if any)."""
    owner = Recorder()
    parser = (implementation.RequestParser if request else implementation.ResponseParser)(owner, LIMIT)
    for piece in pieces:
        try:
            offset = parser.feed(piece)
        except ProxyError as error:
            owner.events.append(("error", type(error).__name__, error.message, error.status, error.code))
            break
        if offset >= 0:
            owner.events.append(("upgrade", piece[offset:]))
            break
    return owner.events, owner.heads


def assert_same_parse(request: bool, pieces: list[bytes]) -> list[Any]:
    expected, _ = run(reference, request, pieces)
    got, heads = run(compiled, request, pieces)
    assert got == expected
    return heads


def splits(raw: bytes) -> list[list[bytes]]:
    """The message whole, byte by byte, and cut in two at a few places."""
    cuts = [[raw], [raw[i : i + 1] for i in range(len(raw))]]
    for at in sorted({1, len(raw) // 3, len(raw) // 2, len(raw) - 1}):
        if 0 < at < len(raw):
            cuts.append([raw[:at], raw[at:]])
    return cuts


REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /a?q=1 HTTP/1.1\r\nHost: Example.org:8000\r\nX-A: 1\r\nX-A: 2\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6;e=1\r\n world\r\n0\r\nX-T: t\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\ntransfer-encoding:  Chunked \r\n\r\n0\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET * HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x02hi",
    b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
    b"POST /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 3\r\n\r\nabc",
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close, X-Secret,  x_other \r\nX-Secret: 1\r\nX_Other: 2\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: [::1]:8000\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: \r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a:b:c\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: []\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x:\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",
    b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
    b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n",
    b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
    b"GET / HTTP/0.9\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\n\r\n",
    b"GARBAGE\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5 \r\n\r\nhello",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent_Length: 5\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 900 + b"\r\n\r\n",
    b"GET /" + b"p" * 1100 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n",
    b"GET / HTTP/1.1\nHost: x\n\n",
    b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\nPOST /bad HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"DELETE /x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    b"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
]

RESPONSES = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\ndate: Thu\r\nserver: uvicorn\r\ncontent-type: text/plain\r\ncontent-length: 3\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n\r\nuntil the end",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x00",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 Fine Thanks\r\nSet-Cookie: a=1; Domain=.x; Path=/\r\nConnection: X-Hop\r\nX-Hop: 1\r\n"
    b"Keep-Alive: 5\r\n"
    b"Proxy-Thing: 1\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n",
    b"NOT HTTP\r\n\r\n",
    b"HTTP/1.1 2000 OK\r\n\r\n",
]


@pytest.mark.parametrize("raw", REQUESTS)
def test_requests_parse_the_same_however_they_are_cut(raw: bytes) -> None:
    for pieces in splits(raw):
        assert_same_parse(True, pieces)


@pytest.mark.parametrize("raw", RESPONSES)
def test_responses_parse_the_same_however_they_are_cut(raw: bytes) -> None:
    for pieces in splits(raw):
        assert_same_parse(False, pieces)


def test_a_never_ending_head_is_refused_the_same() -> None:
    assert_same_parse(True, [b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ", b"a" * 600, b"a" * 600])
    assert_same_parse(False, [b"HTTP/1.1 200 OK\r\nX-Big: ", b"a" * 600, b"a" * 600])


def test_a_failed_parser_stays_failed() -> None:
    for implementation in (reference, compiled):
        parser = implementation.RequestParser(Recorder(), LIMIT)
        with pytest.raises(ProxyError) as first:
            parser.feed(b"GARBAGE\r\n\r\n")
        with pytest.raises(ProxyError) as second:
            parser.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert second.value is first.value


def test_an_owners_error_comes_out_of_feed_as_it_was_raised() -> None:
    class Refusing(Recorder):
        def on_head(self, head: Any) -> None:
            raise LookupError("no")

    for implementation in (reference, compiled):
        for raw in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na"):
            with pytest.raises(LookupError, match="no"):
                implementation.RequestParser(Refusing(), LIMIT).feed(raw)


# Rewriting


def rewrites(raw_request: bytes) -> None:
    """Both implementations' heads of this request, each rewritten by both, for an app and for the API."""
    heads = assert_same_parse(True, [raw_request])
    assert heads, raw_request
    for head in heads:
        for rules in (RULES, None):
            args: dict[str, Any] = dict(client_address=b"10.0.0.1", scheme=b"https", credential_rules=rules)
            assert compiled.upstream_request_head(head, **args) == reference.upstream_request_head(
                reference_head(head), **args
            )


def reference_head(head: Any) -> Any:
    """The same head as the reference builds it (from the compiled parser's fields)."""
    if hasattr(head, "method"):
        return reference.RequestHead(
            method=head.method,
            target=head.target,
            http_version=head.http_version,
            headers=head.headers,
            host=head.host,
            content_length=head.content_length,
            chunked=head.chunked,
            keep_alive=head.keep_alive,
            upgrade=head.upgrade,
            connection_options=head.connection_options,
        )
    return reference.ResponseHead(
        status=head.status,
        reason=head.reason,
        headers=head.headers,
        content_length=head.content_length,
        chunked=head.chunked,
        keep_alive=head.keep_alive,
        connection_options=head.connection_options,
    )


CREDENTIAL_REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: a-b.space.localhost\r\nAuthorization: Bearer sh_tok\r\nX-HF-Authorization: Bearer hf\r\n"
    b"X_HF_Authorization: x\r\nCookie: a=1; spacehub_session=s; b=2\r\nUser-Agent: t\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: bearer   sh_abc\r\nAuthorization: Basic c2hfYWJjOg==\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer hf_app\r\nAuthorization: Basic !!!\r\n"
    b"Authorization: Digest username=sh_\r\nAuthorization: Bearer\r\nAuthorization: Bearer \t sh_x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nCookie: spacehub_session=s\r\nCookie: spacehub_session2=k; a=spacehub_session\r\n"
    b"Cookie: a=1;spacehub_session=s;b=2\r\nCookie: spacehub_session = x ; b=2\r\nCookie: a=1 ; spacehub_session=x\r\n"
    b"Cookie: spacehub_session=x;\r\nCookie: xspacehub_session=1; spacehub_session=2; c=3\r\nCookie: \r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6\r\nX_Forwarded_Host: evil\r\nForwarded: for=x\r\n"
    b"X-Real-IP: 1\r\nX-Forwarded-Prefix: /p\r\nProxy-Authorization: x\r\nProxy_Thing: y\r\nTE: trailers\r\n"
    b"Trailer: x\r\nKeep-Alive: 5\r\nUpgrade: h2c\r\nContent-Length: 0\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, X-Listed\r\nUpgrade: websocket\r\nX-Listed: 1\r\n"
    b"x_listed: 2\r\nSec-WebSocket-Key: k\r\n\r\n",
    b"GET / HTTP/1.0\r\nX-A: 1\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\nhello world!",
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: authorization, cookie\r\nAuthorization: Bearer a\r\nCookie: c=1\r\n\r\n",
]


def _has_head(raw: bytes) -> bool:
    events, _ = run(reference, True, [raw])
    return any(event[0] == "head" for event in events)


@pytest.mark.parametrize("raw", CREDENTIAL_REQUESTS + [r for r in REQUESTS if _has_head(r)])
def test_requests_are_rewritten_the_same(raw: bytes) -> None:
    rewrites(raw)


FRAMINGS = [BODY_NONE, BODY_LENGTH, BODY_CHUNKED, BODY_UNTIL_CLOSE]
CONNECTIONS = [None, b"close", b"keep-alive", b"upgrade"]


def assert_same_response_rewrite(head: Any) -> None:
    ref = reference_head(head)
    for framing in FRAMINGS:
        for connection in CONNECTIONS:
            if framing == BODY_LENGTH and head.content_length is None:
                continue
            for host_only in (True, False):
                assert compiled.client_response_head(
                    head, framing=framing, connection=connection, host_only_cookies=host_only
                ) == reference.client_response_head(
                    ref, framing=framing, connection=connection, host_only_cookies=host_only
                )
            assert compiled.passes_unchanged(head, framing=framing, connection=connection) is (
                reference.passes_unchanged(ref, framing=framing, connection=connection)
            )


@pytest.mark.parametrize("raw", RESPONSES)
def test_responses_are_rewritten_the_same(raw: bytes) -> None:
    for head in assert_same_parse(False, [raw]):
        assert_same_response_rewrite(head)


def test_heads_made_from_values_rewrite_the_same() -> None:
    headers = [(b"Host", b"x"), (b"Connection", b"X-Gone"), (b"X-Gone", b"1"), (b"Cookie", b"spacehub_session=1; a=2")]
    values: dict[str, Any] = dict(
        method=b"GET",
        target=b"/",
        http_version="1.1",
        headers=headers,
        host=b"x",
        content_length=None,
        chunked=False,
        keep_alive=True,
        upgrade=False,
        connection_options=frozenset({b"x-gone"}),
    )
    ours, theirs = compiled.RequestHead(**values), reference.RequestHead(**values)
    assert describe(ours)[:-1] == describe(theirs)[:-1]
    for rules in (RULES, None):
        args: dict[str, Any] = dict(client_address=b"1.2.3.4", scheme=b"http", credential_rules=rules)
        assert compiled.upstream_request_head(ours, **args) == reference.upstream_request_head(theirs, **args)
    response: dict[str, Any] = dict(
        status=200,
        reason=b"",
        headers=[(b"Set-Cookie", b"a=1; domain=x"), (b"Content-Length", b"0"), (b"Upgrade", b"ws")],
        content_length=0,
        chunked=False,
        keep_alive=True,
        connection_options=frozenset(),
    )
    assert_same_response_rewrite(compiled.ResponseHead(**response))


COOKIES = [
    b"spacehub_session=s",
    b"spacehub_session=s; a=1",
    b"a=1;spacehub_session=s;b=2",
    b"a=1; spacehub_session=s",
    b"spacehub_session2=keep; a=spacehub_session",
    b"a=1; spacehub_session=x; spacehub_session=y; b=2",
    b"spacehub_session = x ; b=2",
    b"spacehub_session\t=x",
    b"a=1 ; spacehub_session=x",
    b"spacehub_session=x;",
    b"a=spacehub_session=x; spacehub_session=y",
    b"xspacehub_session=1; spacehub_session=2; c=3",
    b"a=1;  b=2; spacehub_session=s",
    b";spacehub_session=1",
    b" ; spacehub_session=1 ;  ; b",
    b"spacehub_session",
    b"",
]


@pytest.mark.parametrize("cookie", COOKIES)
def test_cookies_lose_the_session_the_same(cookie: bytes) -> None:
    assert compiled.without_cookie(cookie, b"spacehub_session") == reference.without_cookie(cookie, b"spacehub_session")


def test_a_cookie_without_a_name_to_remove_is_left_alone() -> None:
    for implementation in (reference, compiled):
        assert implementation.without_cookie(b"a=1; b=2", b"") == b"a=1; b=2"


# Generated messages: the same examples on every run (CI), or, with SPACEHUB_PARITY_EXAMPLES=N, N new ones at
# random to explore further (e.g. `SPACEHUB_PARITY_EXAMPLES=20000 pytest tests/unit/test_proxy_wire_parity.py`).

EXPLORE = int(os.environ.get("SPACEHUB_PARITY_EXAMPLES", "0"))
GENERATED = settings(
    max_examples=EXPLORE or 500,
    derandomize=not EXPLORE,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

NAMES = [
    b"Host", b"host", b"HOST", b"Content-Length", b"content_length", b"Transfer-Encoding", b"Connection",
    b"connection", b"Upgrade", b"Authorization", b"authorization", b"X-HF-Authorization", b"x_hf_authorization",
    b"Cookie", b"X-Forwarded-For", b"X_Forwarded_Proto", b"Forwarded", b"Keep-Alive", b"TE", b"Trailer",
    b"Proxy-Connection", b"proxy_x", b"X-Listed", b"x_listed", b"Set-Cookie", b"X-A", b"Accept", b"User-Agent",
]
VALUE_CHARS = st.sampled_from([*b"abcXYZ019 _-=;,.:/\t", *b"sh_", 0x80, 0xFF])
VALUES = st.one_of(
    st.sampled_from(
        [
            b"x", b"", b"5", b"0", b"chunked", b"gzip", b"close", b"keep-alive", b"Upgrade", b"upgrade, X-Listed",
            b"x_listed, x-a", b"websocket", b"Bearer sh_1", b"Bearer app", b"Basic c2hfMTo=", b"[::1]:80",
            b"spacehub_session=1; a=2", b"a=1; spacehub_session=2", b"a=1; Domain=.x.org; Path=/",
        ]
    ),
    st.lists(VALUE_CHARS, max_size=24).map(bytes),
)
TOKEN_CHARS = st.sampled_from(b"abcdefghijklmnopqrstuvwxyzABCXYZ0123456789!#$%&'*+-.^_`|~")
HEADER_NAMES = st.one_of(st.sampled_from(NAMES), st.lists(TOKEN_CHARS, min_size=1, max_size=20).map(bytes))
HEADERS = st.lists(st.tuples(HEADER_NAMES, VALUES), max_size=8)


def build_request(
    method: bytes, target: bytes, version: bytes, headers: list[tuple[bytes, bytes]], body: bytes
) -> bytes:
    head = b"%s %s %s\r\n" % (method, target, version)
    return head + b"".join(b"%s: %s\r\n" % header for header in headers) + b"\r\n" + body


def cut(raw: bytes, points: list[int]) -> list[bytes]:
    at = sorted({p % (len(raw) + 1) for p in points})
    edges = [0, *at, len(raw)]
    return [raw[a:b] for a, b in zip(edges, edges[1:], strict=False) if b > a] or [raw]


@GENERATED
@given(
    method=st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT", b"OPTIONS", b"CONNECT", b"get"]),
    target=st.sampled_from([b"/", b"/a?b=c", b"*", b"http://x/", b"//x"]),
    version=st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0"]),
    headers=HEADERS,
    body=st.sampled_from([b"", b"hello", b"5\r\nhello\r\n0\r\n\r\n"]),
    points=st.lists(st.integers(min_value=0, max_value=400), max_size=3),
)
def test_generated_requests_parse_and_rewrite_the_same(
    method: bytes, target: bytes, version: bytes, headers: list[tuple[bytes, bytes]], body: bytes, points: list[int]
) -> None:
    raw = build_request(method, target, version, headers, body)
    heads = assert_same_parse(True, cut(raw, points))
    for head in heads:
        for rules in (RULES, None):
            args: dict[str, Any] = dict(client_address=b"10.0.0.1", scheme=b"https", credential_rules=rules)
            assert compiled.upstream_request_head(head, **args) == reference.upstream_request_head(
                reference_head(head), **args
            )


@GENERATED
@given(
    status=st.sampled_from([b"200 OK", b"101 Switching", b"204 No Content", b"304 X", b"103 Hints", b"404", b"500 E"]),
    headers=HEADERS,
    body=st.sampled_from([b"", b"hello", b"5\r\nhello\r\n0\r\n\r\n"]),
    points=st.lists(st.integers(min_value=0, max_value=400), max_size=3),
)
def test_generated_responses_parse_and_rewrite_the_same(
    status: bytes, headers: list[tuple[bytes, bytes]], body: bytes, points: list[int]
) -> None:
    raw = b"HTTP/1.1 " + status + b"\r\n" + b"".join(b"%s: %s\r\n" % h for h in headers) + b"\r\n" + body
    for head in assert_same_parse(False, cut(raw, points)):
        assert_same_response_rewrite(head)


@GENERATED
@given(
    pairs=st.lists(
        st.sampled_from([b"spacehub_session", b"a", b"spacehub_sessionx", b"x_spacehub_session"]), max_size=5
    ),
    values=st.lists(st.sampled_from([b"=1", b" = 2", b"", b"=spacehub_session", b"\t=3 "]), min_size=5, max_size=5),
    separators=st.lists(st.sampled_from([b";", b"; ", b" ;", b";;", b" ; "]), min_size=5, max_size=5),
)
def test_generated_cookies_lose_the_session_the_same(
    pairs: list[bytes], values: list[bytes], separators: list[bytes]
) -> None:
    cookie = b"".join(name + value + sep for name, value, sep in zip(pairs, values, separators, strict=False))
    assert compiled.without_cookie(cookie, b"spacehub_session") == reference.without_cookie(cookie, b"spacehub_session")


@GENERATED
@given(
    start=st.sampled_from([b"", b"GET / HTTP/1.1\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n", b"HTTP/1.1 200 OK\r\n"]),
    rest=st.binary(max_size=300),
    request=st.booleans(),
    points=st.lists(st.integers(min_value=0, max_value=400), max_size=3),
)
def test_arbitrary_bytes_get_the_same_verdict(start: bytes, rest: bytes, request: bool, points: list[int]) -> None:
    raw = start + rest
    assert_same_parse(request, cut(raw, points) if raw else [raw])


@pytest.mark.parametrize("raw", RESPONSES)
def test_responses_are_framed_the_same(raw: bytes) -> None:
    requests = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"POST / HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
    ]
    for response in assert_same_parse(False, [raw]):
        for request in (head for raw_request in requests for head in assert_same_parse(True, [raw_request])):
            assert compiled.response_framing(response, request) == reference.response_framing(
                reference_head(response), reference_head(request)
            )


@pytest.mark.parametrize(
    "data",
    [*RESPONSES, b"", b"HTTP/1.1 ", b"HTTP/1.1 200 OK\r\n\r", b"HTTP/1.0 200 OK\r\n\r\n", b"xHTTP/1.1 200\r\n\r\n"],
)
def test_a_leading_head_is_measured_the_same(data: bytes) -> None:
    assert compiled.leading_head_length(data) == reference.leading_head_length(data)


# Framing responses for the client: the same bytes, flags and verdicts, piece by piece.

FRAMED_REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
]


def request_head(implementation: ModuleType, raw: bytes) -> Any:
    owner = Recorder()
    implementation.RequestParser(owner, LIMIT).feed(raw)
    (head,) = owner.heads
    return head


def framed(implementation: ModuleType, raw_request: bytes, exchanges: list[list[bytes]], space: bool,
           added: bytes = b"", pending: bool = False) -> list[Any]:
    """What a framer gives for each piece of each exchange (one framer: the connection's, reused), then at EOF.
    `pending`: the request's body is still coming when the answer starts (as `exchange.Exchange` tells it)."""
    framer = implementation.ResponseFramer(LIMIT)
    record: list[Any] = []
    for pieces in exchanges:
        framer.start(request_head(implementation, raw_request), host_only_cookies=space, added=added)
        framer.request_pending = pending
        for piece in pieces:
            try:
                record.append(("out", framer.feed(piece)))
            except ProxyError as error:
                record.append(("error", type(error).__name__, error.message))
                return record
            response = framer.response
            record.append(
                (
                    "state",
                    framer.framing,
                    framer.close_client,
                    framer.done,
                    framer.complete,
                    framer.unexpected,
                    framer.switched,
                    None if response is None else describe(response),
                )
            )
            if framer.done:
                break
    record.append(("eof", framer.at_eof(), framer.done, framer.unexpected))
    return record


def assert_same_framing(raw_request: bytes, exchanges: list[list[bytes]], space: bool = True,
                        pending: bool = False) -> None:
    ours = framed(compiled, raw_request, exchanges, space, pending=pending)
    assert ours == framed(reference, raw_request, exchanges, space, pending=pending)


@pytest.mark.parametrize("raw_request", FRAMED_REQUESTS)
@pytest.mark.parametrize("raw", RESPONSES)
def test_responses_are_framed_for_the_client_the_same(raw_request: bytes, raw: bytes) -> None:
    for pieces in splits(raw):
        assert_same_framing(raw_request, [pieces])
    assert_same_framing(raw_request, [[raw], [raw]], space=False)  # a second exchange on the same connection


@pytest.mark.parametrize("raw", RESPONSES)
def test_answers_while_the_request_body_is_still_coming_are_framed_the_same(raw: bytes) -> None:
    for pieces in splits(raw):
        assert_same_framing(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n", [pieces], pending=True)


UPGRADE_REQUEST = b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
SWITCH = (b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
          b"Set-Cookie: a=b; Domain=x\r\n\r\n")


@pytest.mark.parametrize(
    "raw",
    [SWITCH, SWITCH + b"\x81\x05hello", b"HTTP/1.1 100 Continue\r\n\r\n" + SWITCH + b"\x81\x00", *RESPONSES],
)
def test_answers_to_an_upgrade_request_are_framed_the_same(raw: bytes) -> None:
    for pieces in splits(raw):
        assert_same_framing(UPGRADE_REQUEST, [pieces])
    assert_same_framing(FRAMED_REQUESTS[0], [[raw]])  # a switch nobody asked for is refused the same


PIN = b"Set-Cookie: pin=abc; Path=/; HttpOnly\r\n"


@pytest.mark.parametrize("raw", RESPONSES)
def test_the_proxys_own_headers_are_added_the_same(raw: bytes) -> None:
    for pieces in splits(raw):
        ours = framed(compiled, FRAMED_REQUESTS[0], [pieces], True, PIN)
        assert ours == framed(reference, FRAMED_REQUESTS[0], [pieces], True, PIN)
    # The same connection's next exchange, without them, gets none.
    assert framed(compiled, FRAMED_REQUESTS[0], [[raw], [raw]], True, PIN) == framed(
        reference, FRAMED_REQUESTS[0], [[raw], [raw]], True, PIN)


@pytest.mark.parametrize("implementation", [reference, compiled], ids=["reference", "compiled"])
def test_an_answer_that_would_pass_unchanged_gets_the_added_lines_before_its_body(implementation: ModuleType) -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
    framer = implementation.ResponseFramer(LIMIT)
    framer.start(request_head(implementation, FRAMED_REQUESTS[0]), host_only_cookies=True, added=PIN)
    out = framer.feed(raw)
    head, _, body = out.partition(b"\r\n\r\n")
    assert body == b"hello" and head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert head.endswith(b"\r\n" + PIN.rstrip(b"\r\n")) and b"Content-Type: text/plain" in head
    framer.start(request_head(implementation, FRAMED_REQUESTS[0]), host_only_cookies=True)
    assert framer.feed(raw) == raw  # without: passed on as it came


@GENERATED
@given(
    raw_request=st.sampled_from(FRAMED_REQUESTS),
    responses=st.lists(
        st.tuples(
            st.sampled_from([b"200 OK", b"204 No Content", b"304 X", b"100 Continue", b"103 Hints", b"500 E"]),
            HEADERS,
            st.sampled_from([b"", b"hello", b"5\r\nhello\r\n0\r\n\r\n", b"3\r\nabc\r\n0\r\nX-T: 1\r\n\r\nextra"]),
        ),
        min_size=1,
        max_size=3,
    ),
    points=st.lists(st.integers(min_value=0, max_value=600), max_size=3),
    exchanges=st.integers(min_value=1, max_value=2),
    space=st.booleans(),
)
def test_generated_responses_are_framed_the_same(
    raw_request: bytes,
    responses: list[tuple[bytes, list[tuple[bytes, bytes]], bytes]],
    points: list[int],
    exchanges: int,
    space: bool,
) -> None:
    raw = b"".join(
        b"HTTP/1.1 " + status + b"\r\n" + b"".join(b"%s: %s\r\n" % h for h in headers) + b"\r\n" + body
        for status, headers, body in responses
    )
    assert_same_framing(raw_request, [cut(raw, points)] * exchanges, space)
