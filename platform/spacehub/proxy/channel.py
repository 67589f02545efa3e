"""One socket as the proxy sees it: `await read()` for incoming bytes, `write()` + `await drain()` for
outgoing.

A hand-rolled `asyncio.Protocol` rather than `asyncio.StreamReader`: it hands the received `bytes` objects
over without copying, it tells its owner at once when the peer goes away (`on_disconnect`), which a stream
only reports on the next read or write, and it applies backpressure in both directions: reading pauses while
`READ_HIGH_WATER` bytes sit unread, and `drain()` waits while the transport's write buffer is full.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, cast

if TYPE_CHECKING:
    from .relay import Relay
    from .wireimpl import ResponseFramer

READ_HIGH_WATER: Final = 256 * 1024
READ_LOW_WATER: Final = 64 * 1024


class Channel(asyncio.Protocol):
    def __init__(self, on_connected: Callable[[Channel], None] | None = None) -> None:
        self._on_connected = on_connected
        self.transport: asyncio.Transport | None = None
        self._write: Callable[[bytes], object] | None = None  # the transport's, bound once: called per response
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._reading_paused = False
        self._read_waiter: asyncio.Future[None] | None = None
        self._writing_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self.at_eof = False  # the peer will send nothing more (EOF or connection lost)
        self.closed = False  # the connection is gone: writes are dropped, drain() raises
        self.closing = False  # close() or abort() was called: the transport is being closed
        self.bytes_written = 0  # handed to the transport so far (per-space traffic, spacehub.proxy.traffic)
        # Called once when the peer sends EOF or the connection is lost; the server points it at the task
        # serving the exchange in flight so that a vanished client stops its upstream work at once.
        self.on_disconnect: Callable[[], object] | None = None

    # asyncio.Protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self._write = self.transport.write
        if self._on_connected is not None:
            self._on_connected(self)

    def data_received(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > READ_HIGH_WATER and not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self.at_eof = True
        self._wake_reader()
        self._notify_disconnect()
        return True  # keep our side open: the owner decides when to close

    def connection_lost(self, exc: Exception | None) -> None:
        self.at_eof = True
        self.closed = True
        self._wake_reader()
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)  # drain() re-checks `closed` and raises
        self._notify_disconnect()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # The owner's side

    @property
    def peer_address(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport is not None else None
        if isinstance(peer, tuple) and peer:
            return str(peer[0])
        return "unix" if isinstance(peer, str) else ""

    @property
    def writing_paused(self) -> bool:
        """The transport's write buffer is over its high-water mark (`drain()` would wait)."""
        return self._writing_paused

    @property
    def idle_and_open(self) -> bool:
        """True when a pooled connection may carry another request: open, no EOF, nothing unread."""
        return not self.at_eof and not self.closed and not self._chunks

    async def read(self) -> bytes:
        """The next received bytes, or b"" once the peer has sent EOF (or the connection is gone)."""
        while not self._chunks:
            if self.at_eof:
                return b""
            loop = asyncio.get_running_loop()
            self._read_waiter = loop.create_future()
            try:
                await self._read_waiter
            finally:
                self._read_waiter = None
        data = self._chunks.popleft()
        self._buffered -= len(data)
        if self._reading_paused and self._buffered <= READ_LOW_WATER and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    def write(self, data: bytes) -> None:
        if not self.closed and self._write is not None:
            self.bytes_written += len(data)
            self._write(data)

    def writelines(self, parts: tuple[bytes, ...] | list[bytes]) -> None:
        if not self.closed and self.transport is not None:
            for part in parts:
                self.bytes_written += len(part)
            self.transport.writelines(parts)

    async def drain(self) -> None:
        """Wait while the write buffer is over its high-water mark; raise once the connection is gone."""
        if self._writing_paused and not self.closed:
            loop = asyncio.get_running_loop()
            self._drain_waiter = loop.create_future()
            await self._drain_waiter
        if self.closed:
            raise ConnectionResetError("connection lost")

    def close(self) -> None:
        """Flush what is buffered, then close."""
        self.closing = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        """Close at once, dropping unsent bytes: the peer sees a reset, never a cut message as a whole one."""
        self.closing = True
        if self.transport is not None:
            self.transport.abort()

    # Internals

    def _wake_reader(self) -> None:
        waiter = self._read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _notify_disconnect(self) -> None:
        callback, self.on_disconnect = self.on_disconnect, None
        if callback is not None:
            callback()


class UpstreamChannel(Channel):
    """A connection to an upstream. While a `receiver` is set, what arrives goes straight to it (the callback
    path of `relay.Relay`); otherwise it is queued for `read()` (the coroutine path, and idle in the pool)."""

    def __init__(self) -> None:
        super().__init__()
        self.receiver: Relay | None = None
        # What turns its responses into the client's (the wire layer's): kept for the next exchange on this
        # connection, whose parser stays in step with it (see `ResponseFramer.start`).
        self.framer: ResponseFramer | None = None
        self.idle_since = 0.0  # when it was last returned to the pool (loop time)

    def data_received(self, data: bytes) -> None:
        receiver = self.receiver
        if receiver is not None:
            receiver.upstream_data(data)
        else:
            super().data_received(data)

    def eof_received(self) -> bool:
        keep_open = super().eof_received()
        if self.receiver is not None:
            self.receiver.upstream_closed()
        return keep_open

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.receiver is not None:
            self.receiver.upstream_closed()
