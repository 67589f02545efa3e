"""Header rewriting, both ways: what the upstream sees of a request and what the client sees of a response.

Rules (design §5): the proxy sets `X-Forwarded-For/-Host/-Proto` itself and drops any the client sent, keeps
the client's `Host`, removes hop-by-hop headers (RFC 9110 §7.6.1), and for space upstreams strips the
platform's credentials and makes app cookies host-only. Framing headers (Content-Length, Transfer-Encoding,
Connection) are always written by the proxy, never copied, because it re-frames bodies itself.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from http import HTTPStatus

from .http1 import RequestHead, ResponseHead

HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade"}
)
# The client's word on who it is or how it came in is never passed on; the proxy sets what it knows.
CLIENT_FORWARDING = frozenset(
    {
        b"x-forwarded-for",
        b"x-forwarded-host",
        b"x-forwarded-proto",
        b"x-forwarded-port",
        b"x-forwarded-prefix",
        b"x-forwarded-server",
        b"forwarded",
        b"x-real-ip",
    }
)
_WRITTEN_BY_PROXY = frozenset({b"host", b"content-length"})
_DROP_FROM_REQUEST = HOP_BY_HOP | CLIENT_FORWARDING | _WRITTEN_BY_PROXY
_DROP_FROM_RESPONSE = HOP_BY_HOP | {b"content-length"}

# How a response body is framed towards the client.
BODY_NONE = 0  # HEAD, 1xx, 204, 304: headers only (an upstream Content-Length is kept as information)
BODY_LENGTH = 1  # Content-Length, passed through
BODY_CHUNKED = 2  # re-chunked by the proxy (upstream chunked, or close-delimited to an HTTP/1.1 client)
BODY_UNTIL_CLOSE = 3  # close-delimited, to an HTTP/1.0 client


@dataclass(frozen=True)
class CredentialRules:
    """The platform's credentials, which an app (an `is_space` upstream) must never see."""

    token_prefix: bytes  # `Authorization: Bearer <prefix>...` is a platform token
    session_cookie: bytes  # the platform's session cookie name


_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}


def reason_phrase(status: int) -> bytes:
    return _REASONS.get(status, b"Unknown")


def connection_options(headers: list[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """Header names the sender listed in `Connection` (hop-by-hop by declaration, RFC 9110 §7.6.1)."""
    options: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            options.update(token.strip().lower() for token in value.split(b",") if token.strip())
    return frozenset(options)


def _normalized(name: bytes) -> bytes:
    # Some app servers (WSGI/CGI) read `X_Forwarded_For` as `X-Forwarded-For`: match both spellings.
    lowered = name.lower()
    return lowered.replace(b"_", b"-") if b"_" in lowered else lowered


def is_platform_credential(authorization: bytes, token_prefix: bytes) -> bool:
    """True for `Bearer <platform token>` and for Basic credentials whose user or password is one."""
    scheme, _, credentials = authorization.strip().partition(b" ")
    scheme = scheme.lower()
    credentials = credentials.strip()
    if scheme == b"bearer":
        return credentials.startswith(token_prefix)
    if scheme == b"basic":  # git-style clients send the token as a Basic password
        try:
            user, _, password = base64.b64decode(credentials, validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        return user.startswith(token_prefix) or password.startswith(token_prefix)
    return False


def without_cookie(cookie_header: bytes, name: bytes) -> bytes:
    """The Cookie header value minus every `name=...` pair (b"" if nothing is left)."""
    if name not in cookie_header:
        return cookie_header
    kept = []
    for pair in cookie_header.split(b";"):
        pair = pair.strip()
        if pair and pair.partition(b"=")[0].strip() != name:
            kept.append(pair)
    return b"; ".join(kept)


def without_cookie_domain(set_cookie: bytes) -> bytes:
    """A Set-Cookie value without its `Domain=` attribute(s): the cookie becomes host-only."""
    if b"domain" not in set_cookie.lower():
        return set_cookie
    name_value, *attributes = set_cookie.split(b";")
    kept = [name_value]
    kept.extend(attr for attr in attributes if attr.partition(b"=")[0].strip().lower() != b"domain")
    return b";".join(kept)


def upstream_request_head(
    head: RequestHead,
    *,
    client_address: bytes,
    scheme: bytes,
    credential_rules: CredentialRules | None,
) -> bytes:
    """The request head to send upstream (HTTP/1.1), `credential_rules` set for space upstreams."""
    listed = connection_options(head.headers)
    host = head.host if head.host is not None else b""
    lines = [head.method, b" ", head.target, b" HTTP/1.1\r\nHost: ", host, b"\r\n"]
    upgrade_to: bytes | None = None
    for name, value in head.headers:
        key = _normalized(name)
        if key in _DROP_FROM_REQUEST or key.startswith(b"proxy-") or key in listed:
            if key == b"upgrade" and head.upgrade:
                upgrade_to = value
            continue
        if credential_rules is not None:
            if key == b"x-hf-authorization":
                continue
            if key == b"authorization" and is_platform_credential(value, credential_rules.token_prefix):
                continue
            if key == b"cookie":
                value = without_cookie(value, credential_rules.session_cookie)
                if not value:
                    continue
        lines += (name, b": ", value, b"\r\n")
    if head.chunked:
        lines.append(b"Transfer-Encoding: chunked\r\n")
    elif head.content_length is not None:
        lines += (b"Content-Length: ", str(head.content_length).encode(), b"\r\n")
    if upgrade_to is not None:
        lines += (b"Connection: upgrade\r\nUpgrade: ", upgrade_to, b"\r\n")
    lines += (b"X-Forwarded-For: ", client_address, b"\r\n")
    if head.host is not None:
        lines += (b"X-Forwarded-Host: ", head.host, b"\r\n")
    lines += (b"X-Forwarded-Proto: ", scheme, b"\r\n\r\n")
    return b"".join(lines)


def client_response_head(
    head: ResponseHead,
    *,
    framing: int,
    connection: bytes | None,
    host_only_cookies: bool,
) -> bytes:
    """The response head to send to the client. `connection`: b"close", b"keep-alive", b"upgrade" or None."""
    listed = connection_options(head.headers)
    upgrading = connection == b"upgrade"
    lines = [
        b"HTTP/1.1 ",
        str(head.status).encode(),
        b" ",
        head.reason or reason_phrase(head.status),
        b"\r\n",
    ]
    for name, value in head.headers:
        key = name.lower()
        if key in _DROP_FROM_RESPONSE or key.startswith(b"proxy-") or key in listed:
            if key == b"upgrade" and upgrading:
                lines += (name, b": ", value, b"\r\n")
            elif key == b"content-length" and framing == BODY_NONE:
                lines += (name, b": ", value, b"\r\n")  # a HEAD/304 answer's length is information only
            continue
        if host_only_cookies and key == b"set-cookie":
            value = without_cookie_domain(value)
        lines += (name, b": ", value, b"\r\n")
    if framing == BODY_LENGTH:
        lines += (b"Content-Length: ", str(head.content_length).encode(), b"\r\n")
    elif framing == BODY_CHUNKED:
        lines.append(b"Transfer-Encoding: chunked\r\n")
    if connection is not None:
        lines += (b"Connection: ", connection, b"\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


def simple_response(
    status: int,
    body: bytes,
    *,
    content_type: bytes,
    extra_headers: tuple[tuple[str, str], ...] = (),
    connection: bytes | None = None,
    head_request: bool = False,
) -> bytes:
    """A complete response the proxy answers itself (local routes and errors)."""
    lines = [b"HTTP/1.1 ", str(status).encode(), b" ", reason_phrase(status), b"\r\n"]
    lines += (b"Content-Type: ", content_type, b"\r\nContent-Length: ", str(len(body)).encode(), b"\r\n")
    for name, value in extra_headers:
        encoded_name, encoded_value = name.encode("latin-1"), value.encode("latin-1")
        if any(ch in encoded_name + encoded_value for ch in (b"\r", b"\n", b"\0")):
            raise ValueError(f"invalid characters in local response header {name!r}")
        lines += (encoded_name, b": ", encoded_value, b"\r\n")
    if connection is not None:
        lines += (b"Connection: ", connection, b"\r\n")
    lines.append(b"\r\n")
    if not head_request:
        lines.append(body)
    return b"".join(lines)
