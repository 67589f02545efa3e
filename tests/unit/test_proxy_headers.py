"""Header rewriting rules: forwarding headers, hop-by-hop, platform credentials, host-only cookies, framing."""

from __future__ import annotations

import base64

import pytest

from spacehub.proxy.headers import (
    BODY_CHUNKED,
    BODY_LENGTH,
    BODY_NONE,
    CredentialRules,
    client_response_head,
    is_platform_credential,
    simple_response,
    upstream_request_head,
    without_cookie,
    without_cookie_domain,
)
from spacehub.proxy.http1 import RequestHead, ResponseHead

RULES = CredentialRules(token_prefix=b"sh_", session_cookie=b"spacehub_session")


def listed_in_connection(headers: list[tuple[bytes, bytes]]) -> frozenset[bytes]:
    return frozenset(
        token.strip().lower() for name, value in headers if name.lower() == b"connection" for token in value.split(b",")
    )


def request(headers: list[tuple[bytes, bytes]], **fields: object) -> RequestHead:
    values: dict[str, object] = {
        "method": b"GET",
        "target": b"/path?q=1",
        "http_version": "1.1",
        "headers": headers,
        "host": next((v for k, v in headers if k.lower() == b"host"), None),
        "content_length": None,
        "chunked": False,
        "keep_alive": True,
        "upgrade": False,
        "connection_options": listed_in_connection(headers),
    }
    values.update(fields)
    return RequestHead(**values)  # type: ignore[arg-type]


def rewritten(head: RequestHead, rules: CredentialRules | None = RULES) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    raw = upstream_request_head(head, client_address=b"10.1.2.3", scheme=b"https", credential_rules=rules)
    assert raw.endswith(b"\r\n\r\n")
    request_line, *lines = raw[:-4].split(b"\r\n")
    return request_line, [tuple(line.split(b": ", 1)) for line in lines]  # type: ignore[misc]


def names(headers: list[tuple[bytes, bytes]]) -> list[bytes]:
    return [name.lower() for name, _ in headers]


def test_forwarding_headers_are_the_proxys_own() -> None:
    head = request(
        [
            (b"Host", b"app.space.localhost:8000"),
            (b"X-Forwarded-For", b"6.6.6.6"),
            (b"x-forwarded-host", b"evil"),
            (b"X-Forwarded-Proto", b"http"),
            (b"X-Forwarded-Port", b"1"),
            (b"Forwarded", b"for=6.6.6.6"),
            (b"X-Real-IP", b"6.6.6.6"),
            (b"X_Forwarded_For", b"6.6.6.6"),
            (b"Accept", b"*/*"),
        ]
    )
    request_line, headers = rewritten(head)
    assert request_line == b"GET /path?q=1 HTTP/1.1"
    assert headers == [
        (b"Host", b"app.space.localhost:8000"),
        (b"Accept", b"*/*"),
        (b"X-Forwarded-For", b"10.1.2.3"),
        (b"X-Forwarded-Host", b"app.space.localhost:8000"),
        (b"X-Forwarded-Proto", b"https"),
    ]


def test_hop_by_hop_and_connection_listed_headers_are_removed() -> None:
    head = request(
        [
            (b"Host", b"h"),
            (b"Connection", b"keep-alive, X-Secret"),
            (b"Keep-Alive", b"timeout=5"),
            (b"TE", b"trailers"),
            (b"Trailer", b"X-T"),
            (b"Proxy-Authorization", b"Basic abc"),
            (b"Proxy-Connection", b"keep-alive"),
            (b"Upgrade", b"h2c"),
            (b"X-Secret", b"hop"),
            (b"X-Kept", b"end-to-end"),
        ]
    )
    _, headers = rewritten(head)
    assert names(headers) == [b"host", b"x-kept", b"x-forwarded-for", b"x-forwarded-host", b"x-forwarded-proto"]


def test_upgrade_requests_keep_their_upgrade() -> None:
    head = request(
        [(b"Host", b"h"), (b"Connection", b"Upgrade"), (b"Upgrade", b"websocket"), (b"Sec-WebSocket-Key", b"k")],
        upgrade=True,
    )
    _, headers = rewritten(head)
    assert (b"Connection", b"upgrade") in headers
    assert (b"Upgrade", b"websocket") in headers
    assert (b"Sec-WebSocket-Key", b"k") in headers


def test_framing_headers_are_written_once_by_the_proxy() -> None:
    _, with_length = rewritten(request([(b"Host", b"h"), (b"content-length", b"5")], content_length=5))
    assert [h for h in with_length if h[0].lower() == b"content-length"] == [(b"Content-Length", b"5")]
    _, chunked = rewritten(request([(b"Host", b"h"), (b"Transfer-Encoding", b"Chunked")], chunked=True))
    assert [h for h in chunked if h[0].lower() == b"transfer-encoding"] == [(b"Transfer-Encoding", b"chunked")]


CREDENTIALED = [
    (b"Host", b"h"),
    (b"Authorization", b"Bearer sh_platform"),
    (b"X-HF-Authorization", b"Bearer hf_x"),
    (b"X_HF_Authorization", b"Bearer hf_x"),
    (b"Cookie", b"a=1; spacehub_session=s; b=2"),
]


def test_space_routes_lose_platform_credentials() -> None:
    _, headers = rewritten(request(CREDENTIALED))
    assert b"authorization" not in names(headers)
    assert b"x-hf-authorization" not in names(headers)
    assert b"x_hf_authorization" not in names(headers)
    assert (b"Cookie", b"a=1; b=2") in headers


def test_platform_routes_keep_credentials() -> None:
    _, headers = rewritten(request(CREDENTIALED), rules=None)
    assert (b"Authorization", b"Bearer sh_platform") in headers
    assert (b"X-HF-Authorization", b"Bearer hf_x") in headers
    assert (b"Cookie", b"a=1; spacehub_session=s; b=2") in headers


def basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


@pytest.mark.parametrize(
    ("value", "platform"),
    [
        (b"Bearer sh_abc", True),
        (b"bearer   sh_abc", True),
        (b"Bearer hf_abc", False),
        (b"Bearer app-token", False),
        (basic("alice", "sh_abc"), True),
        (basic("sh_abc", ""), True),
        (basic("alice", "hunter2"), False),
        (b"Basic !!!notbase64", False),
        (b"Digest username=sh_", False),
    ],
)
def test_platform_credential_detection(value: bytes, platform: bool) -> None:
    assert is_platform_credential(value, b"sh_") is platform


@pytest.mark.parametrize(
    ("cookie", "expected"),
    [
        (b"spacehub_session=s", b""),
        (b"spacehub_session=s; a=1", b"a=1"),
        (b"a=1;spacehub_session=s;b=2", b"a=1; b=2"),
        (b"a=1; spacehub_session=s", b"a=1"),
        (b"spacehub_session2=keep; a=spacehub_session", b"spacehub_session2=keep; a=spacehub_session"),
        (b"a=1; b=2", b"a=1; b=2"),
        (b"a=1; spacehub_session=x; spacehub_session=y; b=2", b"a=1; b=2"),
        (b"spacehub_session = x ; b=2", b"b=2"),
        (b"a=1 ; spacehub_session=x", b"a=1"),
        (b"spacehub_session=x;", b""),
        (b"a=spacehub_session=x; spacehub_session=y", b"a=spacehub_session=x"),
        (b"xspacehub_session=1; spacehub_session=2; c=3", b"xspacehub_session=1; c=3"),
        (b"a=1;  b=2; spacehub_session=s", b"a=1;  b=2"),  # the rest as the client sent it
    ],
)
def test_without_cookie(cookie: bytes, expected: bytes) -> None:
    assert without_cookie(cookie, b"spacehub_session") == expected


@pytest.mark.parametrize(
    ("set_cookie", "expected"),
    [
        (b"a=1; Domain=.example.org; Path=/", b"a=1; Path=/"),
        (b"a=1; path=/; DOMAIN = example.org; Secure", b"a=1; path=/; Secure"),
        (b"a=1;Domain=x;Domain=y", b"a=1"),
        (b"domain=1; Path=/", b"domain=1; Path=/"),  # a cookie *named* domain is not the attribute
        (b"a=1; Path=/", b"a=1; Path=/"),
    ],
)
def test_without_cookie_domain(set_cookie: bytes, expected: bytes) -> None:
    assert without_cookie_domain(set_cookie) == expected


def response(headers: list[tuple[bytes, bytes]], status: int = 200, length: int | None = None) -> ResponseHead:
    return ResponseHead(
        status=status,
        reason=b"OK",
        headers=headers,
        content_length=length,
        chunked=False,
        keep_alive=True,
        connection_options=listed_in_connection(headers),
    )


def test_response_head_is_reframed_and_cookies_made_host_only() -> None:
    head = response(
        [
            (b"Content-Type", b"text/plain"),
            (b"Content-Length", b"5"),
            (b"Connection", b"keep-alive, X-Hop"),
            (b"X-Hop", b"1"),
            (b"Keep-Alive", b"timeout=5"),
            (b"Set-Cookie", b"a=1; Domain=.x.org; Path=/"),
        ],
        length=5,
    )
    raw = client_response_head(head, framing=BODY_LENGTH, connection=None, host_only_cookies=True)
    assert raw == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nSet-Cookie: a=1; Path=/\r\nContent-Length: 5\r\n\r\n"
    )
    platform = client_response_head(head, framing=BODY_CHUNKED, connection=b"close", host_only_cookies=False)
    assert b"Set-Cookie: a=1; Domain=.x.org; Path=/\r\n" in platform
    assert b"Transfer-Encoding: chunked\r\n" in platform and b"Content-Length" not in platform
    assert platform.endswith(b"Connection: close\r\n\r\n")


def test_bodyless_response_keeps_its_length_as_information() -> None:
    raw = client_response_head(
        response([(b"Content-Length", b"1234")], length=1234),
        framing=BODY_NONE,
        connection=None,
        host_only_cookies=True,
    )
    assert raw == b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"


def test_switching_protocols_keeps_upgrade() -> None:
    head = response([(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"), (b"Sec-WebSocket-Accept", b"x")], 101)
    raw = client_response_head(head, framing=BODY_NONE, connection=b"upgrade", host_only_cookies=True)
    assert b"Upgrade: websocket\r\n" in raw
    assert b"Connection: upgrade\r\n" in raw
    assert raw.count(b"Connection") == 1


def test_simple_response() -> None:
    raw = simple_response(
        404, b'{"error": "x"}', content_type=b"application/json", extra_headers=(("X-Error-Code", "NotFound"),)
    )
    assert raw == (
        b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 14\r\n"
        b'X-Error-Code: NotFound\r\n\r\n{"error": "x"}'
    )
    head = simple_response(404, b"{}", content_type=b"application/json", connection=b"close", head_request=True)
    assert head.endswith(b"Connection: close\r\n\r\n")
    with pytest.raises(ValueError):
        simple_response(200, b"", content_type=b"text/plain", extra_headers=(("X-A", "1\r\nSet-Cookie: evil"),))
