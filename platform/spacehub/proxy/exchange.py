"""One request with a body (or an upgrade) forwarded to an upstream, its response streamed back; or, after a
101, a raw two-way tunnel. Requests without a body take the callback path instead (`relay.Relay`).

The response is turned into the client's by the upstream connection's `ResponseFramer` (the wire layer), as on
the callback path: one framer, one set of rules for interim answers, heads, re-framing and the end of a body.
Nothing is buffered beyond what one socket read holds: request body pieces go upstream as they are parsed
(in a side task, so an upstream may answer before the body ends), what the framer gives for each piece of the
response goes to the client as it arrives, and each write waits for the receiving side to drain, which carries
backpressure end to end.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from typing import Final

from .channel import Channel, UpstreamChannel
from .errors import BadRequest, ClientGone, ProxyError, UpstreamFailed
from .headers import LAST_CHUNK
from .http1 import RequestHead, RequestReader
from .pool import UpstreamPool
from .routing import Upstream
from .wireimpl import ResponseFramer

logger: Final = logging.getLogger(__name__)


@dataclass(slots=True)
class Exchange:
    client: Channel
    requests: RequestReader
    head: RequestHead
    request_head_bytes: bytes  # the rewritten head, ready to send
    upstream: Upstream
    pool: UpstreamPool
    max_header_bytes: int
    host_only_cookies: bool
    added_headers: bytes = b""  # the proxy's own header lines for the final response (routing.Route)
    status: int = 0  # of the answer the client got (0: none), for the space's traffic counts

    async def run(self) -> bool:
        """Forward the exchange. True when the client connection can serve another request.

        Raises `ProxyError` only while the client has been sent nothing of the final response, so the caller can
        still answer it.
        """
        channel, reused = await self.pool.acquire(self.upstream)
        body_task: asyncio.Task[None] | None = None
        framer: ResponseFramer | None = None
        try:
            channel.write(self.request_head_bytes)
            if self.head.has_body:
                body_task = asyncio.get_running_loop().create_task(self._send_body(channel))
                # A failed body (bad chunk, client gone, upstream gone) makes the response meaningless.
                body_task.add_done_callback(functools.partial(_abort_if_failed, channel))
            framer = self._framer(channel)
            first = await channel.read()
            if not first and reused and self.head.idempotent and body_task is None:
                # The pooled connection was closed under us before it answered: one fresh try.
                channel.abort()
                channel = await self.pool.connect(self.upstream)
                channel.write(self.request_head_bytes)
                framer = self._framer(channel)
                first = await channel.read()
            await self._relay_response(channel, framer, body_task, first)
            if framer.switched:
                await self._tunnel(channel)
                return False

            request_done = body_task is None or body_task.done()
            if body_task is not None:
                if request_done:
                    body_task.result()  # surfaces a body that failed after all
                else:
                    body_task.cancel()  # the upstream answered without reading it all; the rest is dropped
            response = framer.response
            if (
                request_done
                and response is not None
                and response.keep_alive
                and not framer.unexpected
                and not channel.at_eof
            ):
                self.pool.release(self.upstream, channel)
            else:
                channel.abort()
            return request_done and not framer.close_client
        except BaseException as exc:
            channel.abort()
            if body_task is not None:
                body_task.cancel()
            if isinstance(exc, asyncio.CancelledError):
                raise
            body_error = _body_error(body_task)
            if self.status == 0:
                raise (body_error or exc) from None
            # The client has part of a response: cut the connection so it cannot mistake it for a whole one.
            self.client.abort()
            if isinstance(exc, ProxyError | ConnectionError | ClientGone):
                logger.info("proxy: exchange with %s cut short: %s", self.upstream.describe(), exc)
                return False
            raise

    def _framer(self, channel: UpstreamChannel) -> ResponseFramer:
        """The connection's framer (kept with it, like the callback path's), started for this request."""
        framer = channel.framer
        if framer is None:
            framer = channel.framer = ResponseFramer(self.max_header_bytes)
        framer.start(self.head, host_only_cookies=self.host_only_cookies, added=self.added_headers)
        return framer

    async def _relay_response(
        self, channel: UpstreamChannel, framer: ResponseFramer, body_task: asyncio.Task[None] | None, data: bytes
    ) -> None:
        """Pass the upstream's answer (`data`: its first bytes) through the framer to the client until it is done.

        Each arrival goes out in one write, flushed before the next wait for the upstream, so nothing is held back.
        `self.status` is set once the client has (part of) the final answer.
        """
        client = self.client
        while True:
            if not data:
                end = framer.at_eof()  # a body that runs until the upstream closes ends here
                if end is None:
                    if framer.response is None:
                        raise UpstreamFailed("upstream closed the connection before responding")
                    raise UpstreamFailed("upstream closed the connection in the middle of the response")
                if end:
                    client.write(end)
                return
            if framer.response is None:  # the final head may come now: it says whether the client's connection stays
                framer.request_pending = body_task is not None and not body_task.done()
            out = framer.feed(data)
            if out:
                client.write(out)
                response = framer.response
                if self.status == 0 and response is not None:
                    self.status = response.status
            if framer.done:
                return
            try:
                await client.drain()
            except ConnectionError as exc:
                raise ClientGone() from exc
            data = await channel.read()

    async def _send_body(self, channel: Channel) -> None:
        """Copy the client's request body upstream as it arrives, re-chunking a chunked one."""
        chunked = self.head.chunked
        while (piece := await self.requests.read_body()) is not None:
            if not piece:
                continue
            if chunked:
                channel.writelines((b"%x\r\n" % len(piece), piece, b"\r\n"))
            else:
                channel.write(piece)
            await channel.drain()
        if chunked:
            channel.write(LAST_CHUNK)

    async def _tunnel(self, channel: Channel) -> None:
        """After `101 Switching Protocols` (its head, and what came after it, already sent by the framer), copy raw
        bytes both ways until either side closes."""
        if self.requests.upgrade_leftover:
            channel.write(self.requests.upgrade_leftover)
        loop = asyncio.get_running_loop()
        directions = [
            loop.create_task(_pipe(self.client, channel)),
            loop.create_task(_pipe(channel, self.client)),
        ]
        try:
            await asyncio.wait(directions, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in directions:
                task.cancel()
            await asyncio.gather(*directions, return_exceptions=True)
            channel.close()
            self.client.close()


async def _pipe(source: Channel, sink: Channel) -> None:
    while data := await source.read():
        sink.write(data)
        await sink.drain()


def _abort_if_failed(channel: Channel, task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        channel.abort()


def _body_error(task: asyncio.Task[None] | None) -> BaseException | None:
    """The request body's own failure, which explains a broken exchange better than its symptom upstream."""
    if task is None or not task.done() or task.cancelled():
        return None
    error = task.exception()
    return error if isinstance(error, BadRequest | ClientGone) else None
