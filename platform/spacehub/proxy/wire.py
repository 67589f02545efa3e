"""The HTTP/1.1 wire layer, reference implementation: message heads, the strict parsers that make them, and the
header rewriting both ways.

Two implementations have these names and this behaviour: this one (Python over httptools, compiled by mypyc
where it can be) and `_wire` (Cython over llhttp's C API, which collects a head without a Python call per header
and rewrites it without a Python object per header). `wireimpl` picks `_wire` wherever it was built; this one
is the fallback and the specification the parity tests hold `_wire` to (tests/unit/test_proxy_wire_parity.py).

Parsers (`RequestParser`, `ResponseParser`) are push parsers: `feed(data)` parses at once and tells their
owner what it completed:
  owner.on_message_begin()        responses only: a message starts (bytes after a complete response show here)
  owner.on_head(head)             a complete head llhttp has accepted (a `RequestHead` / `ResponseHead`)
  owner.on_body(piece)            a piece of the body, de-chunked
  owner.on_message_complete()     the message ended
`feed` returns -1, or, after the head of an upgrade (a request with `Connection: upgrade`, a 101 response), the
offset in `data` where the bytes after it start: nothing after it is HTTP, and the parser is done. It raises
`BadRequest` (requests: malformed, ambiguous or oversized: never to be forwarded) or `UpstreamFailed`
(responses), or whatever an owner's callback raised; the parser is unusable after that.

Strictness: llhttp is strict by default (no leniency flags are set); on top of it the request parser rejects
anything a downstream server could read differently: CL+TE, repeated framing headers, a Transfer-Encoding other
than `chunked`, several Host headers, non-origin-form targets, oversized heads. A head is handed out only once
llhttp has accepted it completely (llhttp runs some checks after `on_headers_complete`), so a request that turns
out to be invalid is never forwarded, not even partially.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final, Protocol

import httptools

from .errors import BadRequest, HeadersTooLarge, ProxyError, UpstreamFailed

# Per header line: ": " and CRLF. The first line adds a method (or version), two spaces, "HTTP/1.1" and CRLF.
_HEADER_LINE_OVERHEAD: Final = 4
_FIRST_LINE_OVERHEAD: Final = 20

IDEMPOTENT_METHODS: Final = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})

# A Host value: reg-name or IPv4 (RFC 3986 unreserved, sub-delims, pct-encoded) or IPv6 literal; a port.
_HOST_VALUE: Final = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(?::[0-9]*)?")
_VERSIONS: Final[dict[bytes, str]] = {b"HTTP/1.1": "1.1", b"HTTP/1.0": "1.0"}

# Host values already checked against `_HOST_VALUE` (the same few arrive on every request). Bounded, as are the
# other memos here, since these are the peer's to choose.
_valid_hosts: Final[set[bytes]] = set()
_MAX_REMEMBERED: Final = 1024

# Headers the parsers interpret themselves; gathered in one pass over the head.
_NOTABLE_HEADERS: Final = frozenset({b"host", b"content-length", b"transfer-encoding", b"connection"})

# How a response body is framed towards the client.
BODY_NONE: Final = 0  # HEAD, 1xx, 204, 304: headers only (an upstream Content-Length is kept as information)
BODY_LENGTH: Final = 1  # Content-Length, passed through
BODY_CHUNKED: Final = 2  # re-chunked by the proxy (upstream chunked, or close-delimited to an HTTP/1.1 client)
BODY_UNTIL_CLOSE: Final = 3  # close-delimited, to an HTTP/1.0 client

NO_OPTIONS: Final[frozenset[bytes]] = frozenset()

_IDLE: Final = 0
_IN_HEAD: Final = 1
_IN_BODY: Final = 2


class MessageOwner(Protocol):
    """What a parser tells (see the module's docstring); `on_message_begin` is called by response parsers only."""

    def on_message_begin(self) -> None: ...

    def on_head(self, head: Any) -> None: ...  # a RequestHead or ResponseHead, of the parser's own implementation

    def on_body(self, body: bytes) -> None: ...

    def on_message_complete(self) -> None: ...


@dataclass(frozen=True)
class CredentialRules:
    """The platform's credentials, which an app (an `is_space` upstream) must never see."""

    token_prefix: bytes  # `Authorization: Bearer <prefix>...` is a platform token
    session_cookie: bytes  # the platform's session cookie name


# Heads


class RequestHead:
    # A plain class, not a dataclass: a dataclass's generated __init__ runs interpreted even when this module
    # is compiled, and one is made per request.
    __slots__ = (
        "method",
        "target",
        "http_version",
        "headers",
        "host",
        "content_length",
        "chunked",
        "keep_alive",
        "upgrade",
        "connection_options",
    )

    def __init__(
        self,
        *,
        method: bytes,
        target: bytes,
        http_version: str,
        headers: list[tuple[bytes, bytes]],
        host: bytes | None,
        content_length: int | None,
        chunked: bool,
        keep_alive: bool,
        upgrade: bool,
        connection_options: frozenset[bytes],
    ) -> None:
        self.method = method
        self.target = target
        self.http_version = http_version
        self.headers = headers  # as received, names in their original case
        self.host = host
        self.content_length = content_length
        self.chunked = chunked
        self.keep_alive = keep_alive
        self.upgrade = upgrade  # Connection: upgrade + Upgrade: ... (llhttp's definition)
        self.connection_options = connection_options  # lower-case names listed in Connection (hop-by-hop)

    def __repr__(self) -> str:
        return f"RequestHead({self.method!r} {self.target!r} HTTP/{self.http_version}, host={self.host!r})"

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    @property
    def plain(self) -> bool:
        """No body and no upgrade: the proxy relays it in the socket callbacks."""
        return not (self.chunked or self.content_length or self.upgrade)

    @property
    def idempotent(self) -> bool:
        return self.method in IDEMPOTENT_METHODS


class ResponseHead:
    # No HTTP version: the proxy answers every client in HTTP/1.1 whatever the upstream spoke (llhttp checks it).
    __slots__ = (
        "status",
        "reason",
        "headers",
        "content_length",
        "chunked",
        "keep_alive",
        "connection_options",
    )

    def __init__(
        self,
        *,
        status: int,
        reason: bytes,
        headers: list[tuple[bytes, bytes]],
        content_length: int | None,
        chunked: bool,
        keep_alive: bool,
        connection_options: frozenset[bytes],
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.content_length = content_length
        self.chunked = chunked
        self.keep_alive = keep_alive
        self.connection_options = connection_options

    def __repr__(self) -> str:
        return f"ResponseHead({self.status} {self.reason!r})"

    @property
    def informational(self) -> bool:
        return 100 <= self.status < 200

    @property
    def bodyless(self) -> bool:
        """Never has a body, whatever its headers say (RFC 9112 §6.3)."""
        return self.informational or self.status in (204, 304)


# Reading heads


def _connection_options(notable: dict[bytes, list[bytes]]) -> frozenset[bytes]:
    """Header names listed in `Connection` (RFC 9110 §7.6.1), lower-cased."""
    values = notable.get(b"connection")
    if not values:
        return NO_OPTIONS
    return frozenset(token.strip().lower() for value in values for token in value.split(b",") if token.strip())


_NO_NOTABLE: Final[dict[bytes, list[bytes]]] = {}

# Header names by their spelling on the wire -> the lower-case name if notable, else b"": peers send the same
# few names in the same case every time, and a dict lookup costs less than lower-casing each.
_notable_by_name: Final[dict[bytes, bytes]] = {}


def _notable_key(name: bytes) -> bytes:
    key = _notable_by_name.get(name)
    if key is None:
        lowered = name.lower()
        key = lowered if lowered in _NOTABLE_HEADERS else b""
        if len(_notable_by_name) < _MAX_REMEMBERED:
            _notable_by_name[name] = key
    return key


def _notable_headers(headers: list[tuple[bytes, bytes]]) -> dict[bytes, list[bytes]]:
    """The values of the `_NOTABLE_HEADERS` by lower-case name, in one pass (the result must not be changed)."""
    found = _NO_NOTABLE
    for name, value in headers:
        key = _notable_key(name)
        if key:
            if found is _NO_NOTABLE:
                found = {key: [value]}
            elif key in found:
                found[key].append(value)
            else:
                found[key] = [value]
    return found


def _head_size(first_line: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    """A head's size on the wire (the first line counted with a fixed allowance)."""
    size = len(first_line) + _FIRST_LINE_OVERHEAD + _HEADER_LINE_OVERHEAD * len(headers)
    for name, value in headers:
        size += len(name) + len(value)
    return size


class _Parser:
    """What the request and response parsers share: llhttp's callbacks turned into the owner's, the head-size
    guard, and the hold on a head until llhttp has accepted it."""

    def __init__(self, owner: MessageOwner, max_header_bytes: int) -> None:
        self._owner = owner
        self._max_header_bytes = max_header_bytes
        self._state = _IDLE
        self._headers: list[tuple[bytes, bytes]] = []
        self._unfinished_head_bytes = 0  # bytes fed while a head was incomplete: bounds a never-ending head
        # What was fed while the head now parsed was incomplete is at most this much: only a head that may be
        # oversized has its size counted (most heads arrive whole in a read far smaller than the limit).
        self._head_bound = 0
        self._pending_head: object | None = None  # parsed, but llhttp has not finished checking it yet
        self._failed: ProxyError | None = None

    # httptools callbacks (names fixed by httptools)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._state == _IN_HEAD:  # else a chunked trailer: dropped (the proxy forwards no trailers)
            self._headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        if self._pending_head is not None:
            self._release_pending_head()
        self._owner.on_body(body)

    def on_message_complete(self) -> None:
        if self._pending_head is not None:
            self._release_pending_head()
        self._state = _IDLE
        self._unfinished_head_bytes = 0
        self._owner.on_message_complete()

    # Shared machinery

    def _too_large(self) -> ProxyError:
        raise NotImplementedError

    def _malformed(self, detail: str) -> ProxyError:
        raise NotImplementedError

    def _head_may_be_too_large(self) -> bool:
        return self._head_bound > self._max_header_bytes

    def _head_parsed(self, head: object) -> None:
        self._pending_head = head
        self._state = _IN_BODY
        self._unfinished_head_bytes = 0

    def _release_pending_head(self) -> None:
        head = self._pending_head
        if head is not None:
            self._pending_head = None
            self._owner.on_head(head)

    def _feed(self, parser: httptools.HttpRequestParser | httptools.HttpResponseParser, data: bytes) -> int:
        if self._failed is not None:
            raise self._failed
        self._head_bound = self._unfinished_head_bytes + len(data)
        if self._state != _IN_BODY:
            self._unfinished_head_bytes += len(data)
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._release_pending_head()
            return int(upgrade.args[0])
        except httptools.HttpParserError as exc:
            self._pending_head = None  # never hand out a head llhttp rejected
            # A callback's own exception (a rejected head, or the owner's) is the one to raise.
            cause = exc.__context__ if isinstance(exc, httptools.HttpParserCallbackError) else None
            error = cause if cause is not None else self._malformed(str(exc))
            if isinstance(error, ProxyError):
                self._failed = error
            raise error from None
        if self._pending_head is not None:
            self._release_pending_head()
        if self._state != _IN_BODY and self._unfinished_head_bytes > self._max_header_bytes:
            self._failed = self._too_large()
            raise self._failed
        return -1


class RequestParser(_Parser):
    """Requests from a client, one after another on the same connection (see the module's docstring)."""

    def __init__(self, owner: MessageOwner, max_header_bytes: int) -> None:
        super().__init__(owner, max_header_bytes)
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._chunk: bytes | None = None  # the bytes being parsed, while a request line may start them

    def feed(self, data: bytes) -> int:
        # Nothing of a request before these bytes: the next request line, if they hold one, starts them.
        self._chunk = data if self._state == _IDLE and self._unfinished_head_bytes == 0 else None
        try:
            return self._feed(self._parser, data)
        finally:
            self._chunk = None

    def _too_large(self) -> ProxyError:
        return HeadersTooLarge("request headers too large")

    def _malformed(self, detail: str) -> ProxyError:
        return BadRequest(f"malformed request: {detail}")

    def on_message_begin(self) -> None:
        self._state = _IN_HEAD
        self._headers = []
        self._url = b""

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_headers_complete(self) -> None:
        if self._head_may_be_too_large() and _head_size(self._url, self._headers) > self._max_header_bytes:
            raise self._too_large()
        notable = _notable_headers(self._headers)
        parser = self._parser
        method = parser.get_method()
        version = self._version_from_request_line()
        if version is None:
            version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            raise BadRequest(f"HTTP/{version} is not supported", status=505, code="HTTPVersionNotSupported")
        if method == b"CONNECT":
            raise BadRequest("CONNECT is not supported", status=405, code="MethodNotAllowed")
        target = self._url
        if not (target.startswith(b"/") or (target == b"*" and method == b"OPTIONS")):
            raise BadRequest("only origin-form request targets are accepted")

        hosts = notable.get(b"host", ())
        host = hosts[0] if hosts else None
        if len(hosts) > 1:
            raise BadRequest("more than one Host header")
        if host is None and version != "1.0":
            raise BadRequest("missing Host header")
        if host is not None and host not in _valid_hosts:
            if not _HOST_VALUE.fullmatch(host):
                raise BadRequest("invalid Host header")
            if len(_valid_hosts) < _MAX_REMEMBERED:
                _valid_hosts.add(host)

        lengths = notable.get(b"content-length", ())
        encodings = notable.get(b"transfer-encoding", ())
        if len(lengths) > 1:
            raise BadRequest("more than one Content-Length header")
        if len(encodings) > 1:
            raise BadRequest("more than one Transfer-Encoding header")
        if lengths and encodings:
            raise BadRequest("both Content-Length and Transfer-Encoding")
        length_value = lengths[0] if lengths else None
        encoding = encodings[0] if encodings else None
        if encoding is not None and encoding.strip().lower() != b"chunked":
            raise BadRequest("unsupported Transfer-Encoding (only chunked is accepted)")
        if length_value is not None and not length_value.isdigit():
            raise BadRequest("invalid Content-Length")
        content_length = int(length_value) if length_value is not None else None

        upgrade = parser.should_upgrade()
        if upgrade and (encoding is not None or content_length):
            raise BadRequest("an upgrade request cannot carry a body")

        self._head_parsed(
            RequestHead(
                method=method,
                target=target,
                http_version=version,
                headers=self._headers,
                host=host,
                content_length=content_length,
                chunked=encoding is not None,
                keep_alive=parser.should_keep_alive(),
                upgrade=upgrade,
                connection_options=_connection_options(notable) if b"connection" in notable else NO_OPTIONS,
            )
        )

    def _version_from_request_line(self) -> str | None:
        """The request's HTTP version read off its request line, where that line starts the bytes being parsed
        (almost always: a request arrives whole in one read); llhttp has accepted the line, so it ends in
        `HTTP/x.y` and CRLF. Cheaper than asking llhttp, which formats a new string each time. None: ask it."""
        chunk = self._chunk
        if chunk is None:
            return None
        self._chunk = None  # a second request in the same bytes does not start them
        line_end = chunk.find(b"\r\n")
        return _VERSIONS.get(chunk[line_end - 8 : line_end]) if line_end >= 8 else None


class ResponseParser(_Parser):
    """Responses from an upstream, one after another on the same connection (see the module's docstring)."""

    def __init__(self, owner: MessageOwner, max_header_bytes: int) -> None:
        super().__init__(owner, max_header_bytes)
        self._parser = httptools.HttpResponseParser(self)
        self._reason = b""

    def feed(self, data: bytes) -> int:
        return self._feed(self._parser, data)

    def _too_large(self) -> ProxyError:
        return UpstreamFailed("upstream response headers too large")

    def _malformed(self, detail: str) -> ProxyError:
        return UpstreamFailed(f"malformed upstream response: {detail}")

    def on_message_begin(self) -> None:
        self._state = _IN_HEAD
        self._headers = []
        self._reason = b""
        self._owner.on_message_begin()

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_headers_complete(self) -> None:
        if self._head_may_be_too_large() and _head_size(self._reason, self._headers) > self._max_header_bytes:
            raise self._too_large()
        notable = _notable_headers(self._headers)
        lengths = notable.get(b"content-length")
        encodings = notable.get(b"transfer-encoding")
        encoding = encodings[0] if encodings else None
        if encoding is not None and encoding.strip().lower() != b"chunked":
            # Anything else would have to be decoded or passed on verbatim; no app server sends it.
            raise UpstreamFailed("unsupported Transfer-Encoding in upstream response")
        chunked = encoding is not None
        parser = self._parser
        self._head_parsed(
            ResponseHead(
                status=parser.get_status_code(),
                reason=self._reason,
                headers=self._headers,
                content_length=int(lengths[0]) if lengths and not chunked else None,
                chunked=chunked,
                keep_alive=parser.should_keep_alive(),
                connection_options=_connection_options(notable) if b"connection" in notable else NO_OPTIONS,
            )
        )


# Rewriting heads
#
# Rules (design §5): the proxy sets `X-Forwarded-For/-Host/-Proto` itself and drops any the client sent, keeps
# the client's `Host`, removes hop-by-hop headers (RFC 9110 §7.6.1), and for space upstreams strips the
# platform's credentials and makes app cookies host-only. Framing headers (Content-Length, Transfer-Encoding,
# Connection) are always written by the proxy, never copied, because it re-frames bodies itself.

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
    instead of splitting every pair.
    """
    if not name:
        return cookie_header
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
_PASS: Final = -1  # no rule applies: passed on as it is
_REQUEST_ACTIONS: Final[dict[bytes, int]] = {name: _DROP for name in _DROP_FROM_REQUEST}
_REQUEST_ACTIONS[b"upgrade"] = _UPGRADE
_REQUEST_ACTIONS[b"x-hf-authorization"] = _HF_AUTHORIZATION
_REQUEST_ACTIONS[b"authorization"] = _AUTHORIZATION
_REQUEST_ACTIONS[b"cookie"] = _COOKIE


def _request_action(key: bytes, listed: frozenset[bytes]) -> int:
    """The action for a lower-case name, all rules applied: `_` spellings, `proxy-*`, and the names the client
    listed in its Connection header (hop-by-hop by declaration)."""
    normalized = _normalized(key)
    if normalized == b"upgrade":
        return _UPGRADE
    if key in listed or normalized in listed or normalized.startswith(b"proxy-"):
        return _DROP
    return _REQUEST_ACTIONS.get(normalized, _PASS)


# Header names are classified by their spelling on the wire, remembered: clients send the same few names in the
# same case on every request, and a dict lookup is cheaper than lower-casing and testing each name again.
_request_actions_by_name: Final[dict[bytes, int]] = {}
_response_actions_by_name: Final[dict[bytes, int]] = {}


def _request_name_action(name: bytes) -> int:
    """The action for a request header name when the client's Connection header lists nothing."""
    action = _request_actions_by_name.get(name)
    if action is None:
        action = _request_action(name.lower(), NO_OPTIONS)
        if len(_request_actions_by_name) < _MAX_REMEMBERED:
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
        # The names a Connection header lists are hop-by-hop for this request only: not remembered.
        action = _request_action(name.lower(), listed) if listed else _request_name_action(name)
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
        if len(_response_actions_by_name) < _MAX_REMEMBERED:
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


def with_added_headers(head: bytes, added: bytes) -> bytes:
    """A rendered response head with the proxy's own header lines (`Name: value\r\n` each) before its end."""
    return head[:-2] + added + b"\r\n" if added else head


def client_response_head(
    head: ResponseHead,
    *,
    framing: int,
    connection: bytes | None,
    host_only_cookies: bool,
    added: bytes = b"",
) -> bytes:
    """The response head to send to the client. `connection`: b"close", b"keep-alive", b"upgrade" or None.
    `added`: header lines of the proxy's own (e.g. a revision pin cookie), sent after the upstream's."""
    return with_added_headers(_client_response_head(head, framing, connection, host_only_cookies), added)


def _client_response_head(head: ResponseHead, framing: int, connection: bytes | None, host_only_cookies: bool) -> bytes:
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


def response_framing(response: ResponseHead, request: RequestHead) -> int:
    """How the final response to `request` is framed towards the client (one of the BODY_* values)."""
    if response.bodyless or request.method == b"HEAD":
        return BODY_NONE
    if response.content_length is not None:
        return BODY_LENGTH
    # Chunked or close-delimited upstream: re-chunk for HTTP/1.1 clients, so their connection survives.
    return BODY_UNTIL_CLOSE if request.http_version == "1.0" else BODY_CHUNKED


def leading_head_length(data: bytes) -> int:
    """The length of the HTTP/1.1 response head that starts `data`, its blank line included; 0 if none does."""
    if not data.startswith(b"HTTP/1.1 "):
        return 0
    end = data.find(b"\r\n\r\n")
    return end + 4 if end >= 0 else 0


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


# Framing responses

LAST_CHUNK: Final = b"0\r\n\r\n"


class ResponseFramer:
    """What a client gets of its upstream's answer: the bytes to send it for each piece the upstream sends.

    One per upstream connection, `start()`ed for each request sent on it; `feed()` parses what arrived and
    returns what the client gets now (interim 1xx answers to HTTP/1.1 clients, the final head, rewritten or as the
    upstream sent it, and the body re-framed for the client: passed on, re-chunked, or until close), and
    `at_eof()` what ends a body that runs until the upstream closes. Once `done`, the exchange is over: `complete`
    says the parser read the whole final message (the connection can carry the next one unless `unexpected`:
    bytes beyond the answer, or a body after a HEAD answer), `close_client` that the client connection must close
    after it. `feed` raises `UpstreamFailed` for an answer that cannot be relayed (malformed, oversized head, a 101
    nobody asked for); after `done`, what goes wrong only marks `unexpected`.

    Both ways of forwarding use it: the callback path (`relay.Relay`, requests without a body) and the task that
    streams a body or tunnels an upgrade (`exchange.Exchange`). For the latter, two things more: while its owner
    says `request_pending` (the client is still sending the request's body), a final head tells the client the
    connection closes after it; and a 101 to a request that asked for an upgrade is `switched`: its head goes
    out with `Connection: upgrade`, followed by whatever bytes came after it (the first of the new protocol), and
    nothing after that is HTTP, so the owner feeds the framer no more.
    """

    def __init__(self, max_header_bytes: int) -> None:
        self._max_header_bytes = max_header_bytes
        self._parser: ResponseParser | None = None  # kept while the messages on this connection stay in step
        self._request: RequestHead | None = None
        self._host_only_cookies = False
        self._added = b""
        self.request_pending = False  # set by the owner: the client is still sending the request's body
        self._reset()

    def _reset(self) -> None:
        self.response: ResponseHead | None = None  # the final response's head, once parsed
        self.framing = BODY_NONE
        self.close_client = False
        self.done = False  # the final response is complete (for the client)
        self.complete = False  # the parser saw the final response's end: it may read the next response
        self.unexpected = False  # bytes beyond the final response: the connection is out of step
        self.switched = False  # a 101 to an upgrade request: the rest is another protocol, not HTTP
        self._out: list[bytes] = []
        self._unfinished_head_bytes = 0  # bytes received before the final head: bounds a never-ending one
        self._chunk: bytes | None = None  # the bytes being parsed, while the final head may start at their start
        self._passed_unchanged = False

    def start(self, request: RequestHead, *, host_only_cookies: bool, added: bytes = b"") -> None:
        """A new exchange on this connection: the answer to `request` comes next. `added`: header lines of the
        proxy's own for the final response (see `client_response_head`)."""
        if self._parser is None or not self.complete or self.switched:  # new, or not in step any more
            self._parser = ResponseParser(self, self._max_header_bytes)
        self._reset()
        self.request_pending = False
        self._request = request
        self._host_only_cookies = host_only_cookies
        self._added = added

    def feed(self, data: bytes) -> bytes:
        """What the client gets now for these bytes of the upstream's answer (b"" for nothing yet)."""
        if self.response is None:
            # Nothing of the response before these bytes: its head starts them (unless an interim one comes first).
            self._chunk = data if self._unfinished_head_bytes == 0 else None
            self._unfinished_head_bytes += len(data)
        parser = self._parser
        assert parser is not None, "start() first"
        try:
            upgraded_at = parser.feed(data)
        except ProxyError:
            if not self.done:
                raise
            self.unexpected = True  # garbage after a complete response: it stands, the connection is not reused
            upgraded_at = -1
        if self.response is None and self._unfinished_head_bytes > self._max_header_bytes:
            raise UpstreamFailed("upstream response headers too large")  # a head that never ends
        out = self._out
        if upgraded_at >= 0 and self.switched and upgraded_at < len(data):
            out.append(data[upgraded_at:])  # the first bytes of the new protocol, for the client as they came
        if self._chunk is not None:
            self._chunk = None
            response = self.response
            if (
                self._passed_unchanged
                and self.complete
                and not self.unexpected
                and response is not None
                and len(data) == len(out[0]) + (response.content_length or 0)
            ):
                out.clear()
                return data  # head and body as they came, and nothing else in these bytes: the client's answer
        if not out:
            return b""
        joined = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return joined

    def at_eof(self) -> bytes | None:
        """The upstream closed: what ends a body that runs until then (and marks the exchange done), or None when
        its answer is not one of those (then it is cut short)."""
        response = self.response
        if response is None or self.done:
            return None
        if response.chunked or response.content_length is not None or self.framing == BODY_NONE:
            return None
        self.done = self.unexpected = True  # complete, and the connection is spent
        return LAST_CHUNK if self.framing == BODY_CHUNKED else b""

    # The parser's callbacks

    def on_message_begin(self) -> None:
        if self.done:
            self.unexpected = True  # a second response to one request

    def on_head(self, response: ResponseHead) -> None:
        request = self._request
        if self.done or request is None:
            return
        http10 = request.http_version == "1.0"
        if response.informational:
            self._chunk = None  # the final head follows this one: not at the start of these bytes
            if response.status == 101:
                if not request.upgrade:
                    raise UpstreamFailed("upstream switched protocols without being asked to")
                self.response = response
                self.framing = BODY_NONE
                self.switched = self.done = self.close_client = True
                self._out.append(
                    client_response_head(
                        response, framing=BODY_NONE, connection=b"upgrade", host_only_cookies=self._host_only_cookies
                    )
                )
                return
            if not http10:  # 100 Continue, 103 Early Hints: HTTP/1.0 clients know none
                self._out.append(
                    client_response_head(
                        response, framing=BODY_NONE, connection=None, host_only_cookies=self._host_only_cookies
                    )
                )
            return
        self.response = response
        framing = self.framing = response_framing(response, request)
        # After an upgrade request nothing more on the client's connection is HTTP, and one whose body is still
        # coming cannot carry the next request in time: both close.
        self.close_client = close = (
            not request.keep_alive or framing == BODY_UNTIL_CLOSE or request.upgrade or self.request_pending
        )
        connection = b"close" if close else (b"keep-alive" if http10 else None)
        chunk = self._chunk
        if (
            chunk is not None
            and not self._added
            and passes_unchanged(response, framing=framing, connection=connection)
            and (length := leading_head_length(chunk))
        ):
            # The head the parser has just accepted starts these bytes and needs no change: pass it on as it came.
            self._passed_unchanged = True
            self._out.append(chunk[:length])
        else:
            self._out.append(
                client_response_head(
                    response, framing=framing, connection=connection, host_only_cookies=self._host_only_cookies,
                    added=self._added,
                )
            )
        if framing == BODY_NONE:
            self.done = True  # HEAD, 204, 304: over at the head, whatever the parser still expects

    def on_body(self, body: bytes) -> None:
        if self.done:
            self.unexpected = True  # a body after a HEAD answer
        elif self.framing == BODY_CHUNKED:
            self._out += (b"%x\r\n" % len(body), body, b"\r\n")
        else:
            self._out.append(body)

    def on_message_complete(self) -> None:
        if self.response is None:
            return  # the end of an interim response: the final one follows
        if not self.done:  # (else a 204/304 answer, over at its head already)
            if self.framing == BODY_CHUNKED:
                self._out.append(LAST_CHUNK)
            self.done = True
        self.complete = True
