"""The callback path: a request without a body forwarded, and its response relayed, inside the socket callbacks.

Most requests (page loads, API GETs, SSE streams, HEAD, DELETE) carry no body. For them there is nothing to
stream upstream after the head, so the whole exchange runs as a state machine driven by the two connections'
`data_received` callbacks: the rewritten head is written to a pooled upstream connection, each piece of the
response goes through the connection's `ResponseFramer` (parse, rewrite, re-frame: the wire layer) and what it
gives goes to the client in one write per arrival, and the upstream connection returns to the pool when the
response ends. No task, no future, no event-loop round trip per request; a task runs only when a new upstream
connection must be opened.

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
from .routing import Route
from .wireimpl import RequestHead, ResponseFramer

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
        "framer",
        "task",
        "reused",
        "retried",
        "received_any",
        "head_sent",
        "finished",
        "upstream_paused",
        "status",
    )

    def __init__(self, conn: ClientConnection, head: RequestHead, route: Route, request_bytes: bytes) -> None:
        self.conn = conn
        self.head = head
        self.route = route
        self.request_bytes = request_bytes
        self.channel: UpstreamChannel | None = None
        self.framer: ResponseFramer | None = None  # the channel's, while this relay is in charge of it
        self.task: asyncio.Task[None] | None = None  # opening a fresh upstream connection
        self.reused = False
        self.retried = False
        self.received_any = False
        self.head_sent = False  # the client has (part of) the final response: errors now cut the connection
        self.finished = False  # the relay is over (completed, failed or abandoned); later callbacks are ignored
        self.upstream_paused = False
        self.status = 0  # of the answer the client got (0: none yet), for the space's traffic counts

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
        framer = channel.framer
        if framer is None:
            framer = channel.framer = ResponseFramer(self.conn.server.max_header_bytes)
        framer.start(self.head, host_only_cookies=self.route.is_space, added=self.route.added_for(self.request_bytes))
        self.framer = framer
        channel.write(self.request_bytes)
        if self.conn.writing_paused:
            self.client_paused()

    # The upstream connection (called by UpstreamChannel)

    def upstream_data(self, data: bytes) -> None:
        self.received_any = True
        framer = self.framer
        if framer is None:
            return  # finished: nothing more is read for this exchange
        try:
            out = framer.feed(data)
        except ProxyError as exc:
            self._fail(exc)
            return
        except Exception as exc:  # a bug, not the app's doing
            logger.error("proxy: relaying a response failed", exc_info=exc)
            self._fail(UpstreamFailed("relaying the upstream response failed"))
            return
        if out:
            self.conn.write(out)
            if not self.head_sent and framer.response is not None:
                self.head_sent = True
                self.status = framer.response.status
        if framer.done:
            self._finish()

    def upstream_closed(self) -> None:
        """The upstream sent EOF or the connection was lost."""
        if self.finished:
            return
        framer = self.framer
        end = framer.at_eof() if framer is not None else None
        if end is not None:  # a body that ran until the close: complete now
            if end:
                self.conn.write(end)
            self._finish()
            return
        if not self.received_any and self.reused and self.head.idempotent and not self.retried:
            # The pooled connection was closed under us before it answered: one fresh try.
            self.retried = True
            self._drop_channel()
            self._open_fresh()
            return
        if framer is None or framer.response is None:
            self._fail(UpstreamFailed("upstream closed the connection before responding"))
        else:
            self._fail(UpstreamFailed("upstream closed the connection in the middle of the response"))

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
        self.framer = None
        if self.task is not None:
            self.task.cancel()
            self.task = None
        self._drop_channel()
        self.conn.relay_done(self, keep_alive=False)

    # Endings

    def _finish(self) -> None:
        self.finished = True
        framer = self.framer
        channel = self.channel
        assert framer is not None and channel is not None
        response = framer.response
        assert response is not None
        self.status = response.status  # the final one (an interim 1xx may have gone before it)
        self.framer = None
        channel.receiver = None
        self.channel = None
        if self.upstream_paused and channel.transport is not None:
            channel.transport.resume_reading()
        if response.keep_alive and not framer.unexpected and not channel.at_eof:
            self.conn.server.pool.release(self.route.upstream, channel)  # type: ignore[arg-type]
        else:
            channel.close()
        self.conn.relay_done(self, keep_alive=not framer.close_client)

    def _fail(self, error: ProxyError) -> None:
        if self.finished:
            return
        self.finished = True
        self.framer = None
        self._drop_channel()
        conn = self.conn
        head = self.head
        if not self.head_sent:
            self.status = error.status
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
