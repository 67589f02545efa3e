"""Header rewriting, both ways: what the upstream sees of a request and what the client sees of a response.

Rules (design §5): the proxy sets `X-Forwarded-For/-Host/-Proto` itself and drops any the client sent, keeps
the client's `Host`, removes hop-by-hop headers (RFC 9110 §7.6.1), and for space upstreams strips the
platform's credentials and makes app cookies host-only. Framing headers (Content-Length, Transfer-Encoding,
Connection) are always written by the proxy, never copied, because it re-frames bodies itself.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final

from .http1 import NO_OPTIONS, RequestHead, ResponseHead

HOP_BY_HOP: Final = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade"}
)
# The client's word on who it is or how it came in is never passed on; the proxy sets what it knows.
CLIENT_FORWARDING: Final = frozenset(
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
_WRITTEN_BY_PROXY: Final = frozenset({b"host", b"content-length"})
_DROP_FROM_REQUEST: Final = HOP_BY_HOP | CLIENT_FORWARDING | _WRITTEN_BY_PROXY
_DROP_FROM_RESPONSE: Final = HOP_BY_HOP | {b"content-length"}

# How a response body is framed towards the client.
BODY_NONE: Final = 0  # HEAD, 1xx, 204, 304: headers only (an upstream Content-Length is kept as information)
BODY_LENGTH: Final = 1  # Content-Length, passed through
BODY_CHUNKED: Final = 2  # re-chunked by the proxy (upstream chunked, or close-delimited to an HTTP/1.1 client)
BODY_UNTIL_CLOSE: Final = 3  # close-delimited, to an HTTP/1.0 client

LAST_CHUNK: Final = b"0\r\n\r\n"


def response_framing(response: ResponseHead, request: RequestHead) -> int:
    """How the final response to `request` is framed towards the client (one of the BODY_* values)."""
    if response.bodyless or request.method == b"HEAD":
        return BODY_NONE
    if response.content_length is not None:
        return BODY_LENGTH
    # Chunked or close-delimited upstream: re-chunk for HTTP/1.1 clients, so their connection survives.
    return BODY_UNTIL_CLOSE if request.http_version == "1.0" else BODY_CHUNKED


@dataclass(frozen=True)
class CredentialRules:
    """The platform's credentials, which an app (an `is_space` upstream) must never see."""

    token_prefix: bytes  # `Authorization: Bearer <prefix>...` is a platform token
    session_cookie: bytes  # the platform's session cookie name


_REASONS: Final = {status.value: status.phrase.encode() for status in HTTPStatus}


def reason_phrase(status: int) -> bytes:
    return _REASONS.get(status, b"Unknown")


def _normalized(name: bytes) -> bytes:
    # Some app servers (WSGI/CGI) read `X_Forwarded_For` as `X-Forwarded-For`: match both spellings.
    lowered = name.lower()
    return lowered.replace(b"_", b"-") if b"_" in lowered else lowered


def is_platform_credential(authorization: bytes, token_prefix: bytes) -> bool:
    """True for `Bearer <platform token>` and for Basic credentials whose user or password is one."""
    if authorization[:7] == b"Bearer ":  # how clients write it (every request of a signed-in client)
        return authorization[7:].lstrip().startswith(token_prefix)
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
    """The Cookie header value minus every `name=...` pair (b"" if nothing is left).

    The pairs are cut out with their separator and the rest is passed on as the client sent it: a few searches
    instead of splitting every pair (this runs for every request a browser signed in to the platform sends).
    """
    value = cookie_header
    search = 0
    while True:
        at = value.find(name, search)
        if at < 0:
            return value
        after = at + len(name)
        # The end of the pair before (-1: this is the first pair); `name` at the very start begins a pair.
        separator = value.rfind(b";", 0, at) if at else -1
        if (at and value[separator + 1 : at].strip()) or (
            value[after : after + 1] != b"=" and not value[after:].lstrip().startswith(b"=")
        ):
            search = after  # `name` inside another pair's name or value
            continue
        end = value.find(b";", after)
        if end >= 0:  # drop the pair, its separator and the space after it: the next pair moves into its place
            rest = value[end + 1 :].lstrip()
            value = value[: separator + 1] + (b" " if separator >= 0 and rest else b"") + rest
            search = separator + 1
        else:  # the last pair: drop it with the separator before it
            value = value[:separator].rstrip() if separator >= 0 else b""
            return value


def without_cookie_domain(set_cookie: bytes) -> bytes:
    """A Set-Cookie value without its `Domain=` attribute(s): the cookie becomes host-only."""
    if b"domain" not in set_cookie.lower():
        return set_cookie
    name_value, *attributes = set_cookie.split(b";")
    kept = [name_value]
    kept.extend(attr for attr in attributes if attr.partition(b"=")[0].strip().lower() != b"domain")
    return b";".join(kept)


# What to do with a request header, by lower-case name (absent: pass it on as it is).
_DROP: Final = 0  # hop-by-hop, the client's forwarding claims, or written by the proxy itself
_UPGRADE: Final = 1  # hop-by-hop, but an upgrade request's protocol is passed on by the proxy
_HF_AUTHORIZATION: Final = 2  # the platform's own credentials header: never reaches an app
_AUTHORIZATION: Final = 3  # reaches an app unless it carries a platform token
_COOKIE: Final = 4  # reaches an app without the platform's session cookie
_REQUEST_ACTIONS: Final[dict[bytes, int]] = {name: _DROP for name in _DROP_FROM_REQUEST}
_REQUEST_ACTIONS[b"upgrade"] = _UPGRADE
_REQUEST_ACTIONS[b"x-hf-authorization"] = _HF_AUTHORIZATION
_REQUEST_ACTIONS[b"authorization"] = _AUTHORIZATION
_REQUEST_ACTIONS[b"cookie"] = _COOKIE


def _request_action(key: bytes, listed: frozenset[bytes]) -> int | None:
    """The action for a lower-case name, all rules applied: `_` spellings, `proxy-*`, and the names the client
    listed in its Connection header (hop-by-hop by declaration)."""
    normalized = _normalized(key)
    if normalized == b"upgrade":
        return _UPGRADE
    if key in listed or normalized in listed or normalized.startswith(b"proxy-"):
        return _DROP
    return _REQUEST_ACTIONS.get(normalized)


# Header names are classified by their spelling on the wire, remembered: clients send the same few names in the
# same case on every request, and a dict lookup (the name's hash is computed once and kept by the bytes object)
# is cheaper than lower-casing and testing each name again. Bounded, since names are the client's to choose;
# past the bound a name is classified afresh each time.
_PASS: Final = -1  # no rule applies: passed on as it is
_MAX_REMEMBERED_NAMES: Final = 1024
_request_actions_by_name: Final[dict[bytes, int]] = {}
_response_actions_by_name: Final[dict[bytes, int]] = {}


def _request_name_action(name: bytes) -> int:
    """The action for a request header name when the client's Connection header lists nothing."""
    action = _request_actions_by_name.get(name)
    if action is None:
        found = _request_action(name.lower(), NO_OPTIONS)
        action = _PASS if found is None else found
        if len(_request_actions_by_name) < _MAX_REMEMBERED_NAMES:
            _request_actions_by_name[name] = action
    return action


def upstream_request_head(
    head: RequestHead,
    *,
    client_address: bytes,
    scheme: bytes,
    credential_rules: CredentialRules | None,
) -> bytes:
    """The request head to send upstream (HTTP/1.1), `credential_rules` set for space upstreams."""
    # Built as one list of pieces and joined once: no per-line joins, and (compiled) no bound-method calls.
    listed = head.connection_options
    host = head.host if head.host is not None else b""
    out = [head.method, b" ", head.target, b" HTTP/1.1\r\nHost: ", host, b"\r\n"]
    upgrade_to: bytes | None = None
    for name, value in head.headers:
        if listed:  # the names it lists are hop-by-hop for this request only: not remembered
            found = _request_action(name.lower(), listed)
            action = _PASS if found is None else found
        else:
            action = _request_name_action(name)
        if action == _PASS:
            pass
        elif action == _DROP:
            continue
        elif action == _UPGRADE:
            if head.upgrade:
                upgrade_to = value
            continue
        elif credential_rules is None:  # not a space: the API reads the platform's credentials itself
            pass
        elif action == _AUTHORIZATION:
            if is_platform_credential(value, credential_rules.token_prefix):
                continue
        elif action == _COOKIE:
            value = without_cookie(value, credential_rules.session_cookie)
            if not value:
                continue
        else:  # _HF_AUTHORIZATION: dropped
            continue
        out.append(name)
        out.append(b": ")
        out.append(value)
        out.append(b"\r\n")
    if head.chunked:
        out.append(b"Transfer-Encoding: chunked\r\n")
    elif head.content_length is not None:
        out.append(b"Content-Length: %d\r\n" % head.content_length)
    if upgrade_to is not None:
        out.append(b"Connection: upgrade\r\nUpgrade: ")
        out.append(upgrade_to)
        out.append(b"\r\n")
    out.append(b"X-Forwarded-For: ")
    out.append(client_address)
    if head.host is not None:
        out.append(b"\r\nX-Forwarded-Host: ")
        out.append(head.host)
    out.append(b"\r\nX-Forwarded-Proto: ")
    out.append(scheme)
    out.append(b"\r\n\r\n")
    return b"".join(out)


# What to do with a response header, by lower-case name (absent: pass it on as it is).
_RESPONSE_DROP: Final = 0  # hop-by-hop, or framing the proxy writes itself
_RESPONSE_UPGRADE: Final = 1  # kept in a 101 answer only
_RESPONSE_LENGTH: Final = 2  # kept only where the response has no body (a HEAD/304 answer's length is information)
_SET_COOKIE: Final = 3  # made host-only for apps
_RESPONSE_ACTIONS: Final[dict[bytes, int]] = {name: _RESPONSE_DROP for name in _DROP_FROM_RESPONSE}
_RESPONSE_ACTIONS[b"upgrade"] = _RESPONSE_UPGRADE
_RESPONSE_ACTIONS[b"content-length"] = _RESPONSE_LENGTH
_RESPONSE_ACTIONS[b"set-cookie"] = _SET_COOKIE



def _response_action(key: bytes) -> int:
    """The action for a lower-case response header name (the Connection-listed rule aside)."""
    action = _RESPONSE_ACTIONS.get(key)
    if action is None:
        return _RESPONSE_DROP if key[:6] == b"proxy-" else _PASS
    return action


def _response_name_action(name: bytes) -> int:
    action = _response_actions_by_name.get(name)
    if action is None:
        action = _response_action(name.lower())
        if len(_response_actions_by_name) < _MAX_REMEMBERED_NAMES:
            _response_actions_by_name[name] = action
    return action


_STATUS_LINES: Final[dict[tuple[int, bytes], bytes]] = {}


def _status_line(status: int, reason: bytes) -> bytes:
    line = _STATUS_LINES.get((status, reason))
    if line is None:
        line = b"HTTP/1.1 %d %s" % (status, reason or reason_phrase(status))
        if len(_STATUS_LINES) < 256:  # apps' own reason phrases: keep the table bounded
            _STATUS_LINES[(status, reason)] = line
    return line


def client_response_head(
    head: ResponseHead,
    *,
    framing: int,
    connection: bytes | None,
    host_only_cookies: bool,
) -> bytes:
    """The response head to send to the client. `connection`: b"close", b"keep-alive", b"upgrade" or None."""
    listed = head.connection_options
    upgrading = connection == b"upgrade"
    out = [_status_line(head.status, head.reason), b"\r\n"]
    for name, value in head.headers:
        if listed:  # names the upstream listed in Connection are hop-by-hop for this response only
            key = name.lower()
            action = _response_action(key)
            if action in (_PASS, _SET_COOKIE) and key in listed:
                continue
        else:
            action = _response_name_action(name)
        if action == _PASS:
            pass
        elif action == _SET_COOKIE:
            if host_only_cookies:
                value = without_cookie_domain(value)
        elif not (
            (action == _RESPONSE_UPGRADE and upgrading) or (action == _RESPONSE_LENGTH and framing == BODY_NONE)
        ):
            continue  # dropped (kept: a 101's Upgrade; a HEAD/304 answer's length, as information only)
        out.append(name)
        out.append(b": ")
        out.append(value)
        out.append(b"\r\n")
    if framing == BODY_LENGTH:
        out.append(b"Content-Length: %d\r\n" % head.content_length)  # type: ignore[str-format]
    elif framing == BODY_CHUNKED:
        out.append(b"Transfer-Encoding: chunked\r\n")
    if connection is not None:
        out.append(b"Connection: ")
        out.append(connection)
        out.append(b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def passes_unchanged(head: ResponseHead, *, framing: int, connection: bytes | None) -> bool:
    """True when `client_response_head` would send this head as the upstream sent it, up to the spelling of
    Content-Length: a response with a length, nothing hop-by-hop, no cookie to rewrite, no Connection header
    to add. The caller may then pass the upstream's own bytes on (the usual answer of an app server)."""
    if framing != BODY_LENGTH or connection is not None or head.connection_options:
        return False
    for name, _ in head.headers:
        action = _response_name_action(name)
        if action != _PASS and action != _RESPONSE_LENGTH:
            return False
    return True


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


def error_response(
    status: int, message: str, code: str, *, close: bool, keep_alive_10: bool = False, head: bool = False
) -> bytes:
    """The proxy's own error answer: `{"error": message}` with `X-Error-Code`, the platform's error shape."""
    connection = b"close" if close else (b"keep-alive" if keep_alive_10 else None)
    return simple_response(
        status,
        json.dumps({"error": message}).encode(),
        content_type=b"application/json",
        extra_headers=(("X-Error-Code", code),),
        connection=connection,
        head_request=head,
    )
