"""One client connection: an `asyncio.Protocol` that parses what it receives at once (in `data_received`) and
serves the requests on it one after another, handing each complete head to the server (`ProxyServer.begin`).

It also keeps the connection's head timeout (one deadline per head, idle keep-alive time included), and its
backpressure: the client is read no further while parsed requests or body bytes wait unserved, and while its
own write buffer is full the relay in flight stops reading the upstream.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Final

from .channel import READ_HIGH_WATER, READ_LOW_WATER, Channel
from .errors import ProxyError
from .headers import error_response
from .http1 import RequestHead, RequestReader

if TYPE_CHECKING:
    from .relay import Relay
    from .server import ProxyServer

logger: Final = logging.getLogger(__name__)

_MAX_QUEUED_EVENTS: Final = 64  # parsed but unserved pipelined requests before the client is read no further


class ClientConnection(Channel):
    """One client connection: parses what arrives at once and serves its requests one after another.

    After an upgrade it is a plain `Channel` again: the tunnel reads the raw bytes with `read()`.
    """

    def __init__(self, server: ProxyServer) -> None:
        super().__init__()
        self.server = server
        self.requests = RequestReader(None, max_header_bytes=server.max_header_bytes, head_timeout_s=0)
        self.requests.on_body_taken = self._resume_reading_if_drained
        self.address = b""
        self.busy = False  # a request is being served; the ones behind it wait, parsed, in `requests`
        self.relay: Relay | None = None  # the callback-driven exchange in flight
        self.task: asyncio.Task[None] | None = None  # or the task serving the request in flight
        self._dispatching = False
        self._read_paused_for_backlog = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._head_deadline: float | None = None  # waiting for a head: close the connection at this time
        self._head_timer: asyncio.TimerHandle | None = None
        # Per-space traffic (spacehub.proxy.traffic): bytes received so far, and where the counts of both
        # directions stood when the previous request ended; when the request in flight began (monotonic).
        self.bytes_received = 0
        self.received_mark = 0
        self.written_mark = 0
        self.last_space_id = -1  # the space of the last request counted here: its bytes still arriving go to it
        self.started = 0.0

    # asyncio.Protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._loop = asyncio.get_running_loop()
        self.address = self.peer_address.encode()
        self.server.connections.add(self)
        self._serve_next()

    def data_received(self, data: bytes) -> None:
        self.bytes_received += len(data)
        requests = self.requests
        if requests.upgrade_leftover is not None:
            super().data_received(data)  # tunnel bytes, for `read()`
            return
        requests.feed(data)
        if not self.busy:
            self._serve_next()
        elif (
            requests.queued_body_bytes > READ_HIGH_WATER or requests.queued_events > _MAX_QUEUED_EVENTS
        ) and not self._read_paused_for_backlog:
            self._read_paused_for_backlog = True
            if self.transport is not None:
                self.transport.pause_reading()

    def eof_received(self) -> bool:
        keep_open = super().eof_received()
        self.requests.feed_eof()
        if self.busy:
            self._abandon_exchange()  # a client that leaves mid-exchange stops its upstream work at once
        else:
            self._serve_next()  # closes once nothing is left to answer
        return keep_open

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.server.connections.discard(self)
        self.server.count_rest(self)
        self.requests.feed_eof()
        self._cancel_head_timer()
        self._abandon_exchange()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.relay is not None:
            self.relay.client_paused()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.relay is not None:
            self.relay.client_resumed()

    # Serving requests in turn

    def _serve_next(self) -> None:
        """Serve the parsed requests that wait, until one is in flight, none is left, or the connection ends."""
        if self._dispatching:
            return  # called back from within the loop below: it goes on by itself
        self._dispatching = True
        try:
            requests = self.requests
            while not self.busy:
                if self.transport is None or self.closing or self.closed:
                    return
                item = requests.next_item()
                if item is None:
                    self._resume_reading_if_drained()
                    if self.at_eof:
                        self.close()  # the client is done and everything it sent is answered
                    else:
                        self._await_head()
                    return
                if isinstance(item, RequestHead):
                    self._head_deadline = None
                    self.busy = True
                    self.server.begin(self, item)
                elif isinstance(item, ProxyError):
                    self.write(error_response(item.status, item.message, item.code, close=True))
                    self.close()
                    return
                # else the END of a body-less request: nothing to do. (What is left of a body the server did not
                # read never comes here: answering without reading it closes the connection.)
        except Exception:
            logger.exception("proxy: connection from %s failed", self.address.decode())
            self.abort()
        finally:
            self._dispatching = False

    def exchange_done(self, keep_alive: bool) -> None:
        """The request in flight has been served (or has failed); go on with the next, or close."""
        self.busy = False
        self.relay = None
        self.task = None
        if not keep_alive or self.server.draining:
            self.close()
            return
        self._serve_next()

    def relay_done(self, relay: Relay, *, keep_alive: bool) -> None:
        self.server.relay_ended(relay)
        if self.relay is relay:
            self.exchange_done(keep_alive)

    def shut_down(self) -> list[asyncio.Task[None]]:
        """The server is closing: end what is in flight and the connection. Returns the tasks to wait for."""
        tasks = [task for task in (self.task, self.relay.task if self.relay else None) if task is not None]
        for task in tasks:
            task.cancel()
        if self.relay is not None:
            self.relay.abandon()
        self.close()
        return tasks

    def _abandon_exchange(self) -> None:
        if self.relay is not None:
            self.relay.abandon()
        if self.task is not None:
            self.task.cancel()

    def _resume_reading_if_drained(self) -> None:
        requests = self.requests
        if (
            self._read_paused_for_backlog
            and requests.queued_body_bytes <= READ_LOW_WATER
            and requests.queued_events <= _MAX_QUEUED_EVENTS // 2
        ):
            self._read_paused_for_backlog = False
            if self.transport is not None:
                self.transport.resume_reading()

    # The head timeout: one deadline per head, covering idle keep-alive time and slow head bytes alike.

    def _await_head(self) -> None:
        loop = self._loop
        if loop is None or self._head_deadline is not None:
            return  # already waiting: bytes of a head that is still incomplete do not move its deadline
        deadline = self._head_deadline = loop.time() + self.server.head_timeout_s
        if self._head_timer is None:
            self._head_timer = loop.call_at(deadline, self._head_time_up)

    def _head_time_up(self) -> None:
        self._head_timer = None
        deadline = self._head_deadline
        if deadline is None or self.closed or self._loop is None:
            return  # a head came in time; the next wait arms the timer again
        if self._loop.time() >= deadline:
            self.close()
        else:
            self._head_timer = self._loop.call_at(deadline, self._head_time_up)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
