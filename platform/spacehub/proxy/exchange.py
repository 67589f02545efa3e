"""One request with a body (or an upgrade) forwarded to an upstream, its response streamed back; or, after a
101, a raw two-way tunnel. Requests without a body take the callback path instead (`relay.Relay`).

Nothing is buffered beyond what one socket read holds: request body pieces go upstream as they are parsed
(in a side task, so an upstream may answer before the body ends), response pieces go to the client as they
arrive, and each write waits for the receiving side to drain, which carries backpressure end to end.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from typing import Final

from .channel import Channel
from .errors import BadRequest, ClientGone, ProxyError, UpstreamFailed
from .headers import BODY_CHUNKED, BODY_NONE, BODY_UNTIL_CLOSE, LAST_CHUNK, client_response_head, response_framing
from .http1 import RequestHead, RequestReader, ResponseHead, ResponseReader
from .pool import UpstreamPool
from .routing import Upstream

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

        Raises `ProxyError` only while the client has been sent nothing, so the caller can still answer it.
        """
        channel, reused = await self.pool.acquire(self.upstream)
        body_task: asyncio.Task[None] | None = None
        response_started = False
        try:
            channel.write(self.request_head_bytes)
            if self.head.has_body:
                body_task = asyncio.get_running_loop().create_task(self._send_body(channel))
                # A failed body (bad chunk, client gone, upstream gone) makes the response meaningless.
                body_task.add_done_callback(functools.partial(_abort_if_failed, channel))
            responses = self._response_reader(channel)
            try:
                response = await responses.read_head()
            except UpstreamFailed:
                if not (reused and self.head.idempotent and body_task is None and not responses.received_any):
                    raise
                # The pooled connection was closed under us before it answered: one fresh try.
                channel.abort()
                channel = await self.pool.connect(self.upstream)
                channel.write(self.request_head_bytes)
                responses = self._response_reader(channel)
                response = await responses.read_head()

            response = await self._pass_interim_responses(responses, response)
            if response.status == 101:
                if not self.head.upgrade:
                    raise UpstreamFailed("upstream switched protocols without being asked to")
                response_started = True
                self.status = 101
                await self._tunnel(channel, responses, response)
                return False

            framing = response_framing(response, self.head)
            request_done = body_task is None or body_task.done()
            close_client = (
                not self.head.keep_alive
                or not request_done
                or framing == BODY_UNTIL_CLOSE
                or self.head.upgrade  # the request parser stopped at the upgrade; nothing more is HTTP
            )
            if close_client:
                connection: bytes | None = b"close"
            else:
                connection = b"keep-alive" if self.head.http_version == "1.0" else None
            response_head = client_response_head(
                response, framing=framing, connection=connection, host_only_cookies=self.host_only_cookies,
                added=self.added_headers,
            )
            response_started = True
            self.status = response.status
            await self._stream_response(response_head, responses, framing)

            request_done = body_task is None or body_task.done()
            if body_task is not None:
                if request_done:
                    body_task.result()  # surfaces a body that failed after all
                else:
                    body_task.cancel()  # the upstream answered without reading it all; the rest is dropped
            if responses.reusable and request_done:
                self.pool.release(self.upstream, channel)
            else:
                channel.abort()
            return request_done and not close_client
        except BaseException as exc:
            channel.abort()
            if body_task is not None:
                body_task.cancel()
            if isinstance(exc, asyncio.CancelledError):
                raise
            body_error = _body_error(body_task)
            if not response_started:
                raise (body_error or exc) from None
            # The client has part of a response: cut the connection so it cannot mistake it for a whole one.
            self.client.abort()
            if isinstance(exc, ProxyError | ConnectionError | ClientGone):
                logger.info("proxy: exchange with %s cut short: %s", self.upstream.describe(), exc)
                return False
            raise

    def _response_reader(self, channel: Channel) -> ResponseReader:
        return ResponseReader(channel, max_header_bytes=self.max_header_bytes, head_request=self.head.method == b"HEAD")

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

    async def _pass_interim_responses(self, responses: ResponseReader, response: ResponseHead) -> ResponseHead:
        """Forward 1xx responses (100 Continue, 103 Early Hints) to HTTP/1.1 clients; return the final one."""
        while response.informational and response.status != 101:
            if self.head.http_version != "1.0":
                self.client.write(
                    client_response_head(
                        response, framing=BODY_NONE, connection=None, host_only_cookies=self.host_only_cookies
                    )
                )
            response = await responses.read_head()
        return response

    async def _stream_response(self, response_head: bytes, responses: ResponseReader, framing: int) -> None:
        """Send the head and body to the client, each piece as soon as it has arrived from the upstream.

        What is already parsed goes out in one write (a small response: head, body and last chunk in one
        syscall); the output is flushed before every wait for the upstream, so nothing is ever held back.
        """
        client = self.client
        pending = [response_head]
        while True:
            if not responses.event_ready:
                if pending:
                    client.writelines(pending)
                    pending.clear()
                try:
                    await client.drain()
                except ConnectionError as exc:
                    raise ClientGone() from exc
            piece = await responses.read_body()
            if piece is None:
                break
            if not piece:
                continue
            if framing == BODY_CHUNKED:
                pending += (b"%x\r\n" % len(piece), piece, b"\r\n")
            else:
                pending.append(piece)
        if framing == BODY_CHUNKED:
            pending.append(LAST_CHUNK)
        client.writelines(pending)

    async def _tunnel(self, channel: Channel, responses: ResponseReader, response: ResponseHead) -> None:
        """After `101 Switching Protocols`, copy raw bytes both ways until either side closes."""
        self.client.write(
            client_response_head(
                response, framing=BODY_NONE, connection=b"upgrade", host_only_cookies=self.host_only_cookies
            )
        )
        if responses.upgrade_leftover:
            self.client.write(responses.upgrade_leftover)
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
