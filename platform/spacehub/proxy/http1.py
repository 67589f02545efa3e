"""HTTP/1.1 message readers over httptools (llhttp): pull-style `read_head()` / `read_body()` on top of a
push parser.

httptools calls back while it parses whatever bytes it is fed; the readers turn those callbacks into a queue
of events (head, body piece, end, error) that the server takes one at a time, so a pipelined second request
waits in the queue while the first is served. A reader either pulls its bytes from a `ByteSource`, or (the
request reader with `source=None`, as the server runs it) is fed by its owner's `data_received` through
`feed()`, which parses at once: the server then takes a head the moment it is complete, with no task waiting.

llhttp is strict by default (no leniency flags are set here); on top of it the request reader rejects anything
a downstream server could read differently: CL+TE, repeated framing headers, a Transfer-Encoding other than
`chunked`, several Host headers, non-origin-form targets, oversized heads.

A head is only released to the server once llhttp has accepted it completely (llhttp runs some checks after
`on_headers_complete`), so a request that turns out to be invalid is never forwarded, not even partially.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Callable
from typing import Final, Protocol

import httptools

from .errors import BadRequest, ClientGone, HeadersTooLarge, UpstreamFailed

# Per header line: ": " and CRLF. The request line adds a method, two spaces, "HTTP/1.1" and CRLF.
_HEADER_LINE_OVERHEAD: Final = 4
_REQUEST_LINE_OVERHEAD: Final = 20

IDEMPOTENT_METHODS: Final = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})

# A Host value: reg-name or IPv4 (RFC 3986 unreserved, sub-delims, pct-encoded) or IPv6 literal; a port.
_HOST_VALUE: Final = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(?::[0-9]*)?")

_VERSIONS: Final[dict[bytes, str]] = {b"HTTP/1.1": "1.1", b"HTTP/1.0": "1.0"}

# Host values already checked against `_HOST_VALUE` (the same few arrive on every request); bounded, as above.
_valid_hosts: Final[set[bytes]] = set()
_MAX_REMEMBERED_HOSTS: Final = 1024

# Headers the readers interpret themselves; gathered in one pass over the head.
_NOTABLE_HEADERS: Final = frozenset({b"host", b"content-length", b"transfer-encoding", b"connection"})

# The event kinds (the public names are for owners of push-mode readers).
_HEAD: Final = 0
_BODY: Final = 1
_END: Final = 2
_ERROR: Final = 3
HEAD: Final = _HEAD
BODY: Final = _BODY
END: Final = _END
ERROR: Final = _ERROR
_END_EVENT: Final = (_END, None)
_FED: Final = b"(fed)"  # push mode: "new bytes were parsed by the owner's feed"
_IDLE: Final = 0
_IN_HEAD: Final = 1
_IN_BODY: Final = 2


class ByteSource(Protocol):
    """What a reader pulls bytes from (a `Channel`; tests may pass anything with these two members)."""

    async def read(self) -> bytes: ...

    def close(self) -> None: ...


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
    def idempotent(self) -> bool:
        return self.method in IDEMPOTENT_METHODS


class ResponseHead:
    # No HTTP version: the proxy answers every client in HTTP/1.1 whatever the upstream spoke (llhttp checks it),
    # and asking llhttp for it formats a new string each time.
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


NO_OPTIONS: Final[frozenset[bytes]] = frozenset()


def _connection_options(notable: dict[bytes, list[bytes]]) -> frozenset[bytes]:
    """Header names listed in `Connection` (RFC 9110 §7.6.1), lower-cased."""
    values = notable.get(b"connection")
    if not values:
        return NO_OPTIONS
    return frozenset(token.strip().lower() for value in values for token in value.split(b",") if token.strip())


_NO_NOTABLE: Final[dict[bytes, list[bytes]]] = {}


# Header names by their spelling on the wire -> the lower-case name if notable, else b"": peers send the same
# few names in the same case every time, and a dict lookup costs less than lower-casing each. Bounded, since
# names are the peer's to choose (past the bound a name is lower-cased each time).
_notable_by_name: Final[dict[bytes, bytes]] = {}
_MAX_REMEMBERED_NAMES: Final = 1024


def _notable_key(name: bytes) -> bytes:
    key = _notable_by_name.get(name)
    if key is None:
        lowered = name.lower()
        key = lowered if lowered in _NOTABLE_HEADERS else b""
        if len(_notable_by_name) < _MAX_REMEMBERED_NAMES:
            _notable_by_name[name] = key
    return key


def notable_headers(headers: list[tuple[bytes, bytes]]) -> dict[bytes, list[bytes]]:
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


def head_size(first_line: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    """A head's size on the wire."""
    size = len(first_line) + _REQUEST_LINE_OVERHEAD + _HEADER_LINE_OVERHEAD * len(headers)
    for name, value in headers:
        size += len(name) + len(value)
    return size


def response_head(
    parser: httptools.HttpResponseParser,
    headers: list[tuple[bytes, bytes]],
    reason: bytes,
    max_header_bytes: int | None,
) -> ResponseHead:
    """The head of the response `parser` has just parsed (its `on_headers_complete`). Raises `UpstreamFailed`.

    `max_header_bytes`: the size to check the head against; None when the bytes received so far are fewer.
    """
    if max_header_bytes is not None and head_size(reason, headers) > max_header_bytes:
        raise UpstreamFailed("upstream response headers too large")
    notable = notable_headers(headers)
    lengths = notable.get(b"content-length")
    encodings = notable.get(b"transfer-encoding")
    encoding = encodings[0] if encodings else None
    if encoding is not None and encoding.strip().lower() != b"chunked":
        # Anything else would have to be decoded or passed on verbatim; no app server sends it.
        raise UpstreamFailed("unsupported Transfer-Encoding in upstream response")
    chunked = encoding is not None
    return ResponseHead(
        status=parser.get_status_code(),
        reason=reason,
        headers=headers,
        content_length=int(lengths[0]) if lengths and not chunked else None,
        chunked=chunked,
        keep_alive=parser.should_keep_alive(),
        connection_options=_connection_options(notable) if b"connection" in notable else NO_OPTIONS,
    )


class _MessageReader:
    """The event queue and head-size guard shared by the request and response readers."""

    def __init__(self, source: ByteSource, max_header_bytes: int) -> None:
        self._source = source
        self._max_header_bytes = max_header_bytes
        self._events: deque[tuple[int, object]] = deque()
        self._state = _IDLE
        self._headers: list[tuple[bytes, bytes]] = []
        self._unfinished_head_bytes = 0  # bytes fed while a head was incomplete: bounds a never-ending head
        # What was fed while the head now parsed was incomplete is at most this much: only a head that may be
        # oversized has its size counted (most heads arrive whole in a read far smaller than the limit).
        self._head_bound = 0
        self._pending_head: object | None = None  # parsed, but llhttp has not finished checking it yet
        self.upgrade_leftover: bytes | None = None  # bytes after an upgrade message, not HTTP any more
        self.queued_body_bytes = 0  # body bytes parsed and not yet taken (the owner's backpressure signal)

    # httptools callbacks (names fixed by httptools)

    def on_message_begin(self) -> None:
        self._state = _IN_HEAD
        self._headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        # A head's size is checked once it is complete (and, while it is not, by the bytes fed: see `_feed`).
        if self._state == _IN_HEAD:  # else a chunked trailer: dropped (the proxy forwards no trailers)
            self._headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        if self._pending_head is not None:
            self._release_pending_head()
        self._events.append((_BODY, body))
        self.queued_body_bytes += len(body)

    def on_message_complete(self) -> None:
        if self._pending_head is not None:
            self._release_pending_head()
        self._events.append(_END_EVENT)
        self._state = _IDLE
        self._unfinished_head_bytes = 0

    # Shared machinery

    def _head_too_large(self) -> Exception:
        return HeadersTooLarge("request headers too large")

    def _malformed(self, detail: str) -> Exception:
        return BadRequest(f"malformed request: {detail}")

    def _head_parsed(self, head: object) -> None:
        self._pending_head = head
        self._state = _IN_BODY
        self._unfinished_head_bytes = 0

    def _release_pending_head(self) -> None:
        if self._pending_head is not None:
            self._events.append((_HEAD, self._pending_head))
            self._pending_head = None

    def _feed(self, parser: httptools.HttpRequestParser | httptools.HttpResponseParser, data: bytes) -> None:
        self._head_bound = self._unfinished_head_bytes + len(data)
        if self._state != _IN_BODY:
            self._unfinished_head_bytes += len(data)
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._release_pending_head()
            self.upgrade_leftover = data[int(upgrade.args[0]) :]
            return
        except httptools.HttpParserError as exc:
            self._pending_head = None  # never hand out a head llhttp rejected
            cause = exc.__context__
            error = cause if isinstance(cause, BadRequest | UpstreamFailed) else self._malformed(str(exc))
            self._events.append((_ERROR, error))
            self._state = _IDLE
            return
        if self._pending_head is not None:
            self._release_pending_head()
        if self._state != _IN_BODY and self._unfinished_head_bytes > self._max_header_bytes:
            self._events.append((_ERROR, self._head_too_large()))

    def _pop_event(self) -> tuple[int, object] | None:
        if not self._events:
            return None
        event = self._events.popleft()
        if event[0] == _BODY:
            self.queued_body_bytes -= len(event[1])  # type: ignore[arg-type]
        return event

    @property
    def event_ready(self) -> bool:
        """Something already parsed waits to be read: the next read returns without touching the network."""
        return bool(self._events)


class RequestReader(_MessageReader):
    """Reads requests from a client, one after another on the same connection.

    With a `source` it pulls bytes itself. With `source=None` its owner feeds it (`feed`, `feed_eof`) and takes
    events with `next_event()`; `read_body()` then waits for the owner's next feed.
    """

    def __init__(self, source: ByteSource | None, *, max_header_bytes: int, head_timeout_s: float) -> None:
        super().__init__(source, max_header_bytes)  # type: ignore[arg-type]
        self._parser = httptools.HttpRequestParser(self)
        self._head_timeout_s = head_timeout_s
        self._url = b""
        self._body_consumed = False  # read_body() has returned the current request's end
        self._fed_eof = False  # push mode: the owner has seen the client's EOF
        self.on_body_taken: Callable[[], None] | None = None  # push mode: the owner may read on (backpressure)
        self._feed_waiter: asyncio.Future[None] | None = None  # push mode: a read waiting for the next feed
        self._chunk: bytes | None = None  # push mode: the bytes being parsed, while a request line may start them

    # Push mode

    def feed(self, data: bytes) -> None:
        """Parse bytes the owner received; what they complete waits in the queue (see `next_event`)."""
        # Nothing of a request before these bytes: the next request line, if they hold one, starts them.
        self._chunk = data if self._state == _IDLE and self._unfinished_head_bytes == 0 else None
        self._feed(self._parser, data)
        self._chunk = None
        if self._feed_waiter is not None:
            self._wake()

    def feed_eof(self) -> None:
        self._fed_eof = True
        self._wake()

    def next_event(self) -> tuple[int, object] | None:
        """The next parsed event (`HEAD`, `BODY`, `END`, `ERROR` with its payload), or None."""
        event = self._pop_event()
        if event is not None and event[0] == _HEAD:
            self._body_consumed = False
        return event

    @property
    def queued_events(self) -> int:
        return len(self._events)

    def _wake(self) -> None:
        waiter = self._feed_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _next_bytes(self) -> bytes:
        """Pull mode: the source's next bytes. Push mode: parse nothing here, wait for the owner's next feed
        (returns b"" once the owner has seen EOF, else a non-empty placeholder, already parsed)."""
        if self._source is not None:
            return await self._source.read()
        if self._fed_eof:
            return b""
        self._feed_waiter = asyncio.get_running_loop().create_future()
        try:
            await self._feed_waiter
        finally:
            self._feed_waiter = None
        return b"" if self._fed_eof and not self._events else _FED

    def on_message_begin(self) -> None:
        self._state = _IN_HEAD
        self._headers = []
        self._url = b""

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_headers_complete(self) -> None:
        if self._head_bound > self._max_header_bytes and head_size(self._url, self._headers) > self._max_header_bytes:
            raise self._head_too_large()
        notable = notable_headers(self._headers)
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
            if len(_valid_hosts) < _MAX_REMEMBERED_HOSTS:
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

    async def read_head(self) -> RequestHead | None:
        """The next request's head; None when the client closed (or idled past the timeout) between requests.

        Raises `BadRequest` for a request that must not be served; the connection is unusable after that.
        """
        timer: asyncio.TimerHandle | None = None
        try:
            while True:
                event = self._pop_event()
                if event is None:
                    if self.upgrade_leftover is not None:
                        return None  # nothing after an upgrade is HTTP; the server never gets here
                    if timer is None and self._source is not None:
                        # One deadline per head, covering idle keep-alive time and slow head bytes alike.
                        timer = asyncio.get_running_loop().call_later(self._head_timeout_s, self._source.close)
                    data = await self._next_bytes()
                    if not data:
                        return None
                    if data is not _FED:
                        self._feed(self._parser, data)
                    continue
                kind, payload = event
                if kind == _HEAD:
                    assert isinstance(payload, RequestHead)
                    self._body_consumed = False
                    return payload
                if kind == _ERROR:
                    assert isinstance(payload, Exception)
                    raise payload
                # _END of a body-less message the server did not read to its end: nothing to do.
        finally:
            if timer is not None:
                timer.cancel()

    async def read_body(self) -> bytes | None:
        """The next piece of the current request's body (de-chunked); None at its end."""
        while True:
            event = self._pop_event()
            if event is None:
                if self.upgrade_leftover is not None:
                    return None
                data = await self._next_bytes()
                if not data:
                    raise ClientGone("client closed the connection in the middle of the request body")
                if data is not _FED:
                    self._feed(self._parser, data)
                continue
            kind, payload = event
            if kind == _BODY:
                assert isinstance(payload, bytes)
                if self.on_body_taken is not None:
                    self.on_body_taken()
                return payload
            if kind == _END:
                self._body_consumed = True
                return None
            if kind == _ERROR:
                assert isinstance(payload, Exception)
                raise payload
            raise AssertionError("a new request head before the end of the current body")

    def body_finished(self) -> bool:
        """True when the current request's end has been parsed (read or waiting in the queue)."""
        return self._body_consumed or any(kind == _END for kind, _ in self._events)


class ResponseReader(_MessageReader):
    """Reads the responses to one request from an upstream: any 1xx interim ones, then the final one."""

    def __init__(self, source: ByteSource, *, max_header_bytes: int, head_request: bool) -> None:
        super().__init__(source, max_header_bytes)
        self._parser = httptools.HttpResponseParser(self)
        self._head_request = head_request
        self._reason = b""
        self._current: ResponseHead | None = None
        self._final_complete = False
        self._unexpected_data = False
        self.received_any = False  # any byte at all: a pooled connection that failed before it may be retried

    def on_message_begin(self) -> None:
        if self._final_complete:
            self._unexpected_data = True  # bytes after the final response: the connection is out of step
        super().on_message_begin()
        self._reason = b""

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_headers_complete(self) -> None:
        limit = self._max_header_bytes
        head = response_head(self._parser, self._headers, self._reason, limit if self._head_bound > limit else None)
        self._current = head
        self._head_parsed(head)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self._current is not None and not self._current.informational:
            self._final_complete = True

    def _head_too_large(self) -> Exception:
        return UpstreamFailed("upstream response headers too large")

    def _malformed(self, detail: str) -> Exception:
        return UpstreamFailed(f"malformed upstream response: {detail}")

    @property
    def close_delimited(self) -> bool:
        """The final response's body runs until the upstream closes (no Content-Length, not chunked)."""
        head = self._current
        return (
            head is not None
            and not head.chunked
            and head.content_length is None
            and not head.bodyless
            and not self._head_request
        )

    @property
    def reusable(self) -> bool:
        """The connection may carry another request: the final response ended cleanly and keep-alive holds."""
        head = self._current
        if head is None or not head.keep_alive or self._unexpected_data or self.upgrade_leftover is not None:
            return False
        # After a HEAD request llhttp still expects the advertised body; the response is over at its head.
        return self._final_complete or (self._head_request and not self.close_delimited)

    async def read_head(self) -> ResponseHead:
        """The next response head (interim 1xx ones included). Raises `UpstreamFailed`."""
        while True:
            event = self._pop_event()
            if event is None:
                data = await self._read()
                if not data:
                    raise UpstreamFailed("upstream closed the connection before responding")
                self._feed(self._parser, data)
                continue
            kind, payload = event
            if kind == _HEAD:
                assert isinstance(payload, ResponseHead)
                return payload
            if kind == _ERROR:
                assert isinstance(payload, Exception)
                raise payload
            # _END of an interim response: the final one follows.

    async def read_body(self) -> bytes | None:
        """The next piece of the final response's body (de-chunked); None at its end."""
        head = self._current
        if head is None or head.bodyless or self._head_request or self.upgrade_leftover is not None:
            return None
        while True:
            event = self._pop_event()
            if event is None:
                data = await self._read()
                if not data:
                    if self.close_delimited:
                        return None
                    raise UpstreamFailed("upstream closed the connection in the middle of the response")
                self._feed(self._parser, data)
                continue
            kind, payload = event
            if kind == _BODY:
                assert isinstance(payload, bytes)
                return payload
            if kind == _END:
                return None
            if kind == _ERROR:
                assert isinstance(payload, Exception)
                raise payload
            raise UpstreamFailed("upstream sent a second response")

    async def _read(self) -> bytes:
        try:
            data = await self._source.read()
        except OSError as exc:
            raise UpstreamFailed(f"upstream connection failed: {exc}") from exc
        if data:
            self.received_any = True
        return data
