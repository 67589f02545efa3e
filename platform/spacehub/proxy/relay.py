"""The callback path: a request without a body forwarded, and its response relayed, inside the socket callbacks.

Most requests (page loads, API GETs, SSE streams, HEAD, DELETE) carry no body. For them there is nothing to
stream upstream after the head, so the whole exchange runs as a state machine driven by the two connections'
`data_received` callbacks: the rewritten head is written to a pooled upstream connection, each piece of the
response is parsed (llhttp) as it arrives and what it completes goes to the client in one write per arrival,
and the upstream connection returns to the pool when the response ends. No task, no future, no event-loop
round trip per request; a task runs only when a new upstream connection must be opened.

The contract is that of `exchange.Exchange`, which serves requests with bodies and upgrades: the response is
re-framed for the client, interim 1xx responses are passed on, a pooled connection closed under us before it
answered is retried once on a fresh one (idempotent requests), an error before the client got any of the
final response is answered (502), one after it cuts the client connection so a part is never taken for a
whole, and backpressure holds: while the client's write buffer is full the upstream is not read.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Final

from .channel import UpstreamChannel
from .errors import ProxyError, UpstreamFailed
from .headers import (
    BODY_CHUNKED,
    BODY_NONE,
    BODY_UNTIL_CLOSE,
    LAST_CHUNK,
    client_response_head,
    passes_unchanged,
    response_framing,
)
from .routing import Route
from .wireimpl import RequestHead, ResponseHead, ResponseParser

if TYPE_CHECKING:
    from .connection import ClientConnection

logger: Final = logging.getLogger(__name__)


class Relay:
    __slots__ = (
        "conn",
        "head",
        "route",
        "request_bytes",
        "channel",
        "task",
        "parser",
        "reused",
        "retried",
        "received_any",
        "unfinished_head_bytes",
        "response",
        "framing",
        "close_client",
        "out",
        "head_sent",
        "done",
        "unexpected",
        "finished",
        "upstream_paused",
        "complete",
        "chunk",
        "passed_unchanged",
    )

    def __init__(self, conn: ClientConnection, head: RequestHead, route: Route, request_bytes: bytes) -> None:
        self.conn = conn
        self.head = head
        self.route = route
        self.request_bytes = request_bytes
        self.channel: UpstreamChannel | None = None
        self.task: asyncio.Task[None] | None = None  # opening a fresh upstream connection
        self.reused = False
        self.retried = False
        self.received_any = False
        self.unfinished_head_bytes = 0  # bytes received before the final head: bounds a never-ending one
        self.response: ResponseHead | None = None  # the final response's head, once parsed
        self.framing = BODY_NONE
        self.close_client = False
        self.out: list[bytes] = []  # parsed, for the client, written once the current arrival is parsed
        self.head_sent = False  # the client has (part of) the final response: errors now cut the connection
        self.done = False  # the final response is complete
        self.unexpected = False  # bytes beyond the final response: the upstream connection is out of step
        self.finished = False  # the relay is over (completed, failed or abandoned); later callbacks are ignored
        self.upstream_paused = False
        self.complete = False  # llhttp saw the final response's end: its parser may read the next response
        self.parser: ResponseParser | None = None  # the channel's (see UpstreamChannel)
        # The bytes being parsed, while the final response's head may start at their first byte; and whether
        # that head is passed on as the upstream sent it (`headers.passes_unchanged`).
        self.chunk: bytes | None = None
        self.passed_unchanged = False

    # Starting

    def start(self) -> None:
        """Send the request on a pooled connection, or on a fresh one (opened by a short task)."""
        channel = self.conn.server.pool.take_idle(self.route.upstream)  # type: ignore[arg-type]
        if channel is not None:
            self._attach(channel, reused=True)
        else:
            self._open_fresh()

    def _open_fresh(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        try:
            channel = await self.conn.server.pool.connect(self.route.upstream)  # type: ignore[arg-type]
        except UpstreamFailed as exc:
            self.task = None
            self._fail(exc)
            return
        except Exception:
            logger.exception("proxy: connecting to %s failed", self.route.upstream)
            self.task = None
            self._fail(UpstreamFailed("cannot connect to the upstream"))
            return
        self.task = None
        if self.finished:  # the client went away meanwhile
            channel.close()
            return
        self._attach(channel, reused=False)

    def _attach(self, channel: UpstreamChannel, *, reused: bool) -> None:
        self.channel = channel
        self.reused = reused
        channel.receiver = self
        parser = channel.response_parser
        if parser is None:
            parser = channel.response_parser = ResponseParser(channel, self.conn.server.max_header_bytes)
        self.parser = parser
        channel.write(self.request_bytes)
        if self.conn.writing_paused:
            self.client_paused()

    # The response parser's callbacks (the channel's parser passes them on)

    def on_message_begin(self) -> None:
        if self.done:
            self.unexpected = True  # a second response to one request

    def on_head(self, response: ResponseHead) -> None:
        if self.done:
            return
        head = self.head
        if response.informational:
            self.chunk = None  # the final head follows this one: not at the start of these bytes
            if response.status == 101:
                raise UpstreamFailed("upstream switched protocols without being asked to")
            if head.http_version != "1.0":  # 100 Continue, 103 Early Hints: HTTP/1.0 clients know none
                self.out.append(
                    client_response_head(
                        response, framing=BODY_NONE, connection=None, host_only_cookies=self.route.is_space
                    )
                )
            return
        self.response = response
        framing = self.framing = response_framing(response, head)
        self.close_client = close = not head.keep_alive or framing == BODY_UNTIL_CLOSE
        if close:
            connection: bytes | None = b"close"
        else:
            connection = b"keep-alive" if head.http_version == "1.0" else None
        chunk = self.chunk
        if (
            chunk is not None
            and chunk.startswith(b"HTTP/1.1 ")
            and passes_unchanged(response, framing=framing, connection=connection)
        ):
            # The head the parser has just accepted starts these bytes and needs no change: pass it on as it came.
            self.passed_unchanged = True
            self.out.append(chunk[: chunk.find(b"\r\n\r\n") + 4])
        else:
            self.out.append(
                client_response_head(
                    response, framing=framing, connection=connection, host_only_cookies=self.route.is_space
                )
            )
        if framing == BODY_NONE:
            self.done = True  # HEAD, 204, 304: over at the head, whatever llhttp still expects

    def on_body(self, body: bytes) -> None:
        if self.done:
            self.unexpected = True  # a body after a HEAD answer
        elif self.framing == BODY_CHUNKED:
            self.out += (b"%x\r\n" % len(body), body, b"\r\n")
        else:
            self.out.append(body)

    def on_message_complete(self) -> None:
        if self.response is None:
            return  # the end of an interim response: the final one follows
        if not self.done:  # (else a 204/304 answer, over at its head already)
            if self.framing == BODY_CHUNKED:
                self.out.append(LAST_CHUNK)
            self.done = True
        self.complete = True

    # The upstream connection (called by UpstreamChannel)

    def upstream_data(self, data: bytes) -> None:
        self.received_any = True
        if self.response is None:
            # Nothing of the response before these bytes: its head starts them (unless an interim one comes first).
            self.chunk = data if self.unfinished_head_bytes == 0 else None
            self.unfinished_head_bytes += len(data)
        parser = self.parser
        if parser is None:
            return  # finished: nothing more is read for this exchange
        try:
            parser.feed(data)
        except ProxyError as exc:
            if self.done:  # garbage after a complete response: it stands, the connection is not reused
                self.unexpected = True
            else:
                self._fail(exc)
                return
        except Exception as exc:  # a bug in a callback, not the app's doing
            logger.error("proxy: relaying a response failed", exc_info=exc)
            self._fail(UpstreamFailed("relaying the upstream response failed"))
            return
        if self.response is None and self.unfinished_head_bytes > self.conn.server.max_header_bytes:
            self._fail(UpstreamFailed("upstream response headers too large"))  # a head that never ends
            return
        if self.chunk is not None:
            self.chunk = None
            response = self.response
            if (
                self.passed_unchanged
                and self.complete
                and not self.unexpected
                and response is not None
                and len(data) == len(self.out[0]) + (response.content_length or 0)
            ):
                # Head and body as they came, and nothing else in these bytes: they are the client's answer.
                self.out.clear()
                self.out.append(data)
        self._flush()
        if self.done:
            self._finish()

    def upstream_closed(self) -> None:
        """The upstream sent EOF or the connection was lost."""
        if self.finished:
            return
        response = self.response
        if response is not None and self._close_delimited(response):
            if self.framing == BODY_CHUNKED:
                self.out.append(LAST_CHUNK)
            self.done = self.unexpected = True  # complete, and the connection is spent
            self._flush()
            self._finish()
            return
        if not self.received_any and self.reused and self.head.idempotent and not self.retried:
            # The pooled connection was closed under us before it answered: one fresh try.
            self.retried = True
            self._drop_channel()
            self._open_fresh()
            return
        if response is None:
            self._fail(UpstreamFailed("upstream closed the connection before responding"))
        else:
            self._fail(UpstreamFailed("upstream closed the connection in the middle of the response"))

    def _close_delimited(self, response: ResponseHead) -> bool:
        return not response.chunked and response.content_length is None and self.framing != BODY_NONE

    # The client connection (called by ClientConnection)

    def client_paused(self) -> None:
        channel = self.channel
        if channel is not None and not self.upstream_paused and channel.transport is not None:
            self.upstream_paused = True
            channel.transport.pause_reading()

    def client_resumed(self) -> None:
        channel = self.channel
        if channel is not None and self.upstream_paused and channel.transport is not None:
            self.upstream_paused = False
            channel.transport.resume_reading()

    def abandon(self) -> None:
        """The client went away (or the server is closing): stop the upstream's work at once."""
        if self.finished:
            return
        self.finished = True
        self.parser = None
        if self.task is not None:
            self.task.cancel()
            self.task = None
        self._drop_channel()
        self.conn.relay_done(self, keep_alive=False)

    # Endings

    def _flush(self) -> None:
        out = self.out
        if out:
            # One buffer: uvloop writes a single bytes object on its fastest path (a list takes a slower
            # scatter-gather setup); the copy is of one read's worth at most.
            self.conn.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()
            if self.response is not None:
                self.head_sent = True

    def _finish(self) -> None:
        self.finished = True
        self.parser = None
        channel = self.channel
        response = self.response
        assert channel is not None and response is not None
        channel.receiver = None
        self.channel = None
        if self.upstream_paused and channel.transport is not None:
            channel.transport.resume_reading()
        if not self.complete:
            channel.response_parser = None  # left mid-message (a HEAD answer's advertised body): not reusable
        if response.keep_alive and not self.unexpected and not channel.at_eof:
            self.conn.server.pool.release(self.route.upstream, channel)  # type: ignore[arg-type]
        else:
            channel.close()
        self.conn.relay_done(self, keep_alive=not self.close_client)

    def _fail(self, error: ProxyError) -> None:
        if self.finished:
            return
        self.finished = True
        self.parser = None
        self._drop_channel()
        self.out.clear()
        conn = self.conn
        head = self.head
        if not self.head_sent:
            logger.info("proxy: %s %s -> %s: %s", head.method.decode(), head.host, error.status, error.message)
            keep = conn.server.answer_error(conn, head, error.status, error.message, error.code)
            conn.relay_done(self, keep_alive=keep)
        else:
            # The client has part of a response: cut the connection so it cannot mistake it for a whole one.
            logger.info("proxy: exchange with %s cut short: %s", self.route.upstream.describe(), error)  # type: ignore[union-attr]
            conn.abort()
            conn.relay_done(self, keep_alive=False)

    def _drop_channel(self) -> None:
        channel = self.channel
        if channel is not None:
            channel.receiver = None
            channel.abort()
            self.channel = None
