"""Keep-alive connections to upstreams, reused across client requests.

uvicorn (Gradio's server) closes a connection after 5 s idle, and a request written onto a connection the
server is closing at that moment is lost. So idle connections are dropped after `idle_s` (default 3 s), and
the most recently used one is handed out first: it is the least likely to be mid-close.
"""

from __future__ import annotations

import asyncio

from .channel import UpstreamChannel
from .errors import UpstreamFailed
from .routing import Upstream


class UpstreamPool:
    def __init__(self, *, idle_s: float, connect_timeout_s: float, max_idle_per_upstream: int = 64) -> None:
        self._idle_s = idle_s
        self._connect_timeout_s = connect_timeout_s
        self._max_idle_per_upstream = max_idle_per_upstream
        # Idle connections per upstream, most recently released last (a stack: no entry objects per request; the
        # time a connection went idle is kept on it, `idle_since`).
        self._idle: dict[Upstream, list[UpstreamChannel]] = {}
        self._sweep_timer: asyncio.TimerHandle | None = None
        self._closed = False
        # Looked up once: asyncio.get_running_loop() costs a getpid() system call on every call.
        self._loop = asyncio.get_running_loop()
        self._now = self._loop.time  # bound once: called twice per request

    async def acquire(self, upstream: Upstream) -> tuple[UpstreamChannel, bool]:
        """A connection to `upstream` and whether it was reused (only a reused one may fail stale)."""
        channel = self.take_idle(upstream)
        if channel is not None:
            return channel, True
        return await self.connect(upstream), False

    def take_idle(self, upstream: Upstream) -> UpstreamChannel | None:
        """A pooled connection to `upstream`, fit for another request, or None (then `connect`)."""
        idle = self._idle.get(upstream)
        if idle:
            now = self._now()
            while idle:
                channel = idle.pop()
                if now - channel.idle_since < self._idle_s and channel.idle_and_open:
                    return channel
                channel.close()
        return None

    async def connect(self, upstream: Upstream) -> UpstreamChannel:
        """A fresh connection. Raises `UpstreamFailed` if it cannot be made in time."""
        loop = self._loop
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                if upstream.unix_path:
                    _, channel = await loop.create_unix_connection(UpstreamChannel, upstream.unix_path)
                elif upstream.host is not None and upstream.port is not None:
                    _, channel = await loop.create_connection(UpstreamChannel, upstream.host, upstream.port)
                else:
                    raise UpstreamFailed(f"incomplete upstream address {upstream!r}")
        except (OSError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            raise UpstreamFailed(f"cannot connect to upstream {upstream.describe()}: {reason}") from exc
        return channel

    def release(self, upstream: Upstream, channel: UpstreamChannel) -> None:
        """Return a connection whose last exchange finished cleanly."""
        if self._closed or not channel.idle_and_open:
            channel.close()
            return
        idle = self._idle.get(upstream)
        if idle is None:
            idle = self._idle[upstream] = []
        elif len(idle) >= self._max_idle_per_upstream:
            channel.close()
            return
        channel.idle_since = self._now()
        idle.append(channel)
        if self._sweep_timer is None:
            self._sweep_timer = self._loop.call_later(self._idle_s, self._sweep)

    def idle_count(self, upstream: Upstream) -> int:
        return len(self._idle.get(upstream, ()))

    def close(self) -> None:
        self._closed = True
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
            self._sweep_timer = None
        for idle in self._idle.values():
            for channel in idle:
                channel.close()
        self._idle.clear()

    def _sweep(self) -> None:
        """Close connections idle for `idle_s` or closed by the upstream; runs while any are pooled."""
        self._sweep_timer = None
        now = self._loop.time()
        for upstream in list(self._idle):
            fresh: list[UpstreamChannel] = []
            for channel in self._idle[upstream]:
                if now - channel.idle_since < self._idle_s and channel.idle_and_open:
                    fresh.append(channel)
                else:
                    channel.close()
            if fresh:
                self._idle[upstream] = fresh
            else:
                del self._idle[upstream]
        if self._idle and not self._closed:
            self._sweep_timer = self._loop.call_later(self._idle_s / 2, self._sweep)
