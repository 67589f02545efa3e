"""The HTTP/1.1 request reader: pull-style `read_head()` / `read_body()` on top of the wire layer's push parser.

A parser (`wireimpl`: strict llhttp, heads checked before they are handed out) tells its owner what it completes;
the reader turns that into a queue of events (head, body piece, end, error) that the server takes one at a time,
so a pipelined second request waits in the queue while the first is served. A reader either pulls its bytes
from a `ByteSource`, or (with `source=None`, as the server runs it) is fed by its owner's `data_received`
through `feed()`, which parses at once: the server then takes a head the moment it is complete, with no task
waiting. (Responses need no reader: both ways of forwarding hand the upstream's bytes to the wire layer's
`ResponseFramer`, which gives the client's at once.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final, Protocol

from .errors import ClientGone, ProxyError
from .wireimpl import RequestHead, RequestParser, ResponseHead

__all__ = [
    "END_OF_MESSAGE",
    "ByteSource",
    "RequestHead",
    "RequestReader",
    "ResponseHead",
]

_FED: Final = b"(fed)"  # push mode: "new bytes were parsed by the owner's feed"


class _EndOfMessage:
    """The queue's mark for the end of a message (the other items are heads, body pieces and errors)."""

    __slots__ = ()


END_OF_MESSAGE: Final = _EndOfMessage()


class ByteSource(Protocol):
    """What a reader pulls bytes from (a `Channel`; tests may pass anything with these two members)."""

    async def read(self) -> bytes: ...

    def close(self) -> None: ...


def _no_parser(data: bytes) -> int:
    raise AssertionError("a reader without a parser")


class _MessageReader:
    """The event queue of a reader; the owner of its parser."""

    def __init__(self, source: ByteSource | None) -> None:
        self._source = source
        # What the parser completed, in order: a head, a body piece (bytes), END_OF_MESSAGE, or the ProxyError that
        # stopped it; the items before `_taken` have been taken. Items, not (kind, payload) pairs, and a list, not a
        # deque (compiled, a list's own operations are native): the server takes two or three a request.
        self._events: list[object] = []
        self._taken = 0
        self._parse: Callable[[bytes], int] = _no_parser  # the parser's `feed`, bound once (subclasses set it)
        self.upgrade_leftover: bytes | None = None  # bytes after an upgrade message, not HTTP any more
        self.queued_body_bytes = 0  # body bytes parsed and not yet taken (the owner's backpressure signal)

    # The parser's owner callbacks

    def on_message_begin(self) -> None:
        pass

    def on_head(self, head: object) -> None:
        self._events.append(head)

    def on_body(self, body: bytes) -> None:
        self._events.append(body)
        self.queued_body_bytes += len(body)

    def on_message_complete(self) -> None:
        self._events.append(END_OF_MESSAGE)

    # Shared machinery

    def _feed(self, data: bytes) -> None:
        try:
            offset = self._parse(data)
        except ProxyError as error:  # never a head llhttp or the checks rejected: the parser is done
            self._events.append(error)
            return
        if offset >= 0:
            self.upgrade_leftover = data[offset:]

    def _pop(self) -> object | None:
        """The next item (see `_events`), or None."""
        events = self._events
        taken = self._taken
        if taken >= len(events):
            return None
        item = events[taken]
        taken += 1
        if taken == len(events):
            events.clear()
            taken = 0
        self._taken = taken
        if isinstance(item, bytes):
            self.queued_body_bytes -= len(item)
        return item

    @property
    def event_ready(self) -> bool:
        """Something already parsed waits to be read: the next read returns without touching the network."""
        return self._taken < len(self._events)


class RequestReader(_MessageReader):
    """Reads requests from a client, one after another on the same connection.

    With a `source` it pulls bytes itself. With `source=None` its owner feeds it (`feed`, `feed_eof`) and takes
    what it parsed with `next_item()`; `read_body()` then waits for the owner's next feed.
    """

    def __init__(self, source: ByteSource | None, *, max_header_bytes: int, head_timeout_s: float) -> None:
        super().__init__(source)
        self._parse = RequestParser(self, max_header_bytes).feed
        self._head_timeout_s = head_timeout_s
        self._body_consumed = False  # read_body() has returned the current request's end
        self._fed_eof = False  # push mode: the owner has seen the client's EOF
        self.on_body_taken: Callable[[], None] | None = None  # push mode: the owner may read on (backpressure)
        self._feed_waiter: asyncio.Future[None] | None = None  # push mode: a read waiting for the next feed

    # Push mode

    def feed(self, data: bytes) -> None:
        """Parse bytes the owner received; what they complete waits in the queue (see `next_item`)."""
        self._feed(data)
        if self._feed_waiter is not None:
            self._wake()

    def feed_eof(self) -> None:
        self._fed_eof = True
        self._wake()

    def next_item(self) -> object | None:
        """The next parsed item: a `RequestHead`, a body piece (bytes), END_OF_MESSAGE, a ProxyError, or None."""
        item = self._pop()
        if isinstance(item, RequestHead):
            self._body_consumed = False
        return item

    @property
    def queued_events(self) -> int:
        return len(self._events) - self._taken

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
        return b"" if self._fed_eof and not self.event_ready else _FED

    async def read_head(self) -> RequestHead | None:
        """The next request's head; None when the client closed (or idled past the timeout) between requests.

        Raises `BadRequest` for a request that must not be served; the connection is unusable after that.
        """
        timer: asyncio.TimerHandle | None = None
        try:
            while True:
                item = self._pop()
                if item is None:
                    if self.upgrade_leftover is not None:
                        return None  # nothing after an upgrade is HTTP; the server never gets here
                    if timer is None and self._source is not None:
                        # One deadline per head, covering idle keep-alive time and slow head bytes alike.
                        timer = asyncio.get_running_loop().call_later(self._head_timeout_s, self._source.close)
                    data = await self._next_bytes()
                    if not data:
                        return None
                    if data is not _FED:
                        self._feed(data)
                    continue
                if isinstance(item, RequestHead):
                    self._body_consumed = False
                    return item
                if isinstance(item, ProxyError):
                    raise item
                # The end of a body-less message the server did not read to its end: nothing to do.
        finally:
            if timer is not None:
                timer.cancel()

    async def read_body(self) -> bytes | None:
        """The next piece of the current request's body (de-chunked); None at its end."""
        while True:
            item = self._pop()
            if item is None:
                if self.upgrade_leftover is not None:
                    return None
                data = await self._next_bytes()
                if not data:
                    raise ClientGone("client closed the connection in the middle of the request body")
                if data is not _FED:
                    self._feed(data)
                continue
            if isinstance(item, bytes):
                if self.on_body_taken is not None:
                    self.on_body_taken()
                return item
            if item is END_OF_MESSAGE:
                self._body_consumed = True
                return None
            if isinstance(item, ProxyError):
                raise item
            raise AssertionError("a new request head before the end of the current body")

    def body_finished(self) -> bool:
        """True when the current request's end has been parsed (read or waiting in the queue)."""
        return self._body_consumed or any(item is END_OF_MESSAGE for item in self._events[self._taken :])
