"""The HTTP/1.1 request reader on scripted byte streams: framing, pipelining, strictness, upgrades, timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from spacehub.proxy.errors import BadRequest, ClientGone, HeadersTooLarge
from spacehub.proxy.http1 import RequestHead, RequestReader

T = TypeVar("T")


class Script:
    """A byte source that yields the given pieces, then EOF (or waits forever with `hang=True`)."""

    def __init__(self, *pieces: bytes, hang: bool = False) -> None:
        self.pieces = list(pieces)
        self.hang = hang
        self.closed = False
        self._released: asyncio.Future[None] | None = None

    async def read(self) -> bytes:
        if self.pieces:
            return self.pieces.pop(0)
        if self.hang and not self.closed:
            self._released = asyncio.get_running_loop().create_future()
            await self._released
        return b""

    def close(self) -> None:
        self.closed = True
        if self._released is not None and not self._released.done():
            self._released.set_result(None)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def requests(*pieces: bytes, max_header_bytes: int = 65536) -> RequestReader:
    return RequestReader(Script(*pieces), max_header_bytes=max_header_bytes, head_timeout_s=5)


async def read_request(reader: RequestReader) -> tuple[RequestHead | None, bytes]:
    head = await reader.read_head()
    body = b""
    if head is not None:
        while (piece := await reader.read_body()) is not None:
            body += piece
    return head, body


def test_pipelined_requests_come_out_one_by_one() -> None:
    async def scenario() -> None:
        reader = requests(
            b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        first, body = await read_request(reader)
        assert first is not None and first.target == b"/a" and body == b""
        second, body = await read_request(reader)
        assert second is not None and second.method == b"POST" and body == b"hello"
        assert second.content_length == 5 and second.has_body and not second.idempotent
        third = await reader.read_head()
        assert third is not None and third.target == b"/c"
        assert await reader.read_head() is None  # EOF between requests

    run(scenario())


def test_bodyless_request_need_not_be_read_to_its_end() -> None:
    async def scenario() -> None:
        reader = requests(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        first = await reader.read_head()
        assert first is not None and reader.body_finished()
        second = await reader.read_head()
        assert second is not None and second.target == b"/b"

    run(scenario())


def test_head_split_into_single_bytes() -> None:
    raw = b"GET /split?q=1 HTTP/1.1\r\nHost: Example.org:8000\r\nX-A: 1\r\n\r\n"
    head, _ = run(read_request(requests(*(raw[i : i + 1] for i in range(len(raw))))))
    assert head is not None
    assert head.target == b"/split?q=1"
    assert head.host == b"Example.org:8000"
    assert head.headers == [(b"Host", b"Example.org:8000"), (b"X-A", b"1")]
    assert head.http_version == "1.1" and head.keep_alive


def test_chunked_body_is_dechunked_and_trailers_dropped() -> None:
    reader = requests(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        b"lo\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
    )
    head, body = run(read_request(reader))
    assert head is not None and head.chunked and head.content_length is None
    assert body == b"hello world"
    assert all(name != b"X-Trailer" for name, _ in head.headers)


def test_client_leaving_mid_body_is_client_gone() -> None:
    reader = requests(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    with pytest.raises(ClientGone):
        run(read_request(reader))


def test_http10_without_host_is_accepted_and_not_kept_alive() -> None:
    head, _ = run(read_request(requests(b"GET / HTTP/1.0\r\n\r\n")))
    assert head is not None and head.host is None and not head.keep_alive


@pytest.mark.parametrize(
    "raw",
    [
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET //x HTTP/1.1\r\nHost: a b\r\n\r\n",
        b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\n\r\n",
        b"GARBAGE\r\n\r\n",
    ],
)
def test_rejected_requests_never_yield_a_head(raw: bytes) -> None:
    with pytest.raises(BadRequest):
        run(read_request(requests(raw)))


def test_valid_request_before_a_rejected_one_is_still_served() -> None:
    async def scenario() -> None:
        reader = requests(
            b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /bad HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"  # llhttp's own post-head check
        )
        first = await reader.read_head()
        assert first is not None and first.target == b"/ok"
        with pytest.raises(BadRequest, match="Transfer-Encoding"):
            await reader.read_head()

    run(scenario())


def test_oversized_head_is_431_when_complete_and_when_never_ending() -> None:
    with pytest.raises(HeadersTooLarge):
        run(
            read_request(
                requests(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n", max_header_bytes=1024)
            )
        )
    with pytest.raises(HeadersTooLarge):
        run(read_request(requests(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ", b"a" * 2000, max_header_bytes=1024)))
    head, _ = run(
        read_request(
            requests(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 900 + b"\r\n\r\n", max_header_bytes=1024)
        )
    )
    assert head is not None


def test_upgrade_request_keeps_the_bytes_after_its_head() -> None:
    async def scenario() -> None:
        reader = requests(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x02hi")
        head = await reader.read_head()
        assert head is not None and head.upgrade
        assert reader.upgrade_leftover == b"\x81\x02hi"
        assert await reader.read_body() is None

    run(scenario())


def test_head_timeout_closes_an_idle_connection() -> None:
    async def scenario() -> None:
        source = Script(b"GET / HTTP/1.1\r\n", hang=True)
        reader = RequestReader(source, max_header_bytes=65536, head_timeout_s=0.05)
        assert await asyncio.wait_for(reader.read_head(), 5) is None
        assert source.closed

    run(scenario())


def _fed(*pieces: bytes) -> list[RequestHead | Exception]:
    """What a push-mode reader (the server's way) yields for these reads, heads and errors in order."""
    reader = RequestReader(None, max_header_bytes=65536, head_timeout_s=0)
    found: list[RequestHead | Exception] = []
    for piece in pieces:
        reader.feed(piece)
        while (item := reader.next_item()) is not None:
            if isinstance(item, RequestHead | Exception):  # not the END of a body-less request, which carries nothing
                found.append(item)
    return found


@pytest.mark.parametrize(
    ("pieces", "versions"),
    [
        ((b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",), ["1.1"]),
        ((b"GET / HTTP/1.0\r\n\r\n",), ["1.0"]),
        # The second request does not start the bytes: its version comes from llhttp.
        ((b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.0\r\n\r\n",), ["1.1", "1.0"]),
        ((b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n",), ["1.0", "1.1"]),
        ((b"\r\nGET / HTTP/1.0\r\n\r\n",), ["1.0"]),  # a blank line before the request
        ((b"GET / HTTP/1.0\r", b"\n\r\n"), ["1.0"]),  # the request line split across reads
        ((b"GET /", b" HTTP/1.1\r\nHost: x\r\n\r\n"), ["1.1"]),
    ],
)
def test_the_version_is_the_request_lines_however_the_bytes_arrive(
    pieces: tuple[bytes, ...], versions: list[str]
) -> None:
    heads = _fed(*pieces)
    assert [head.http_version for head in heads if isinstance(head, RequestHead)] == versions


def test_an_http2_request_line_is_refused_with_505() -> None:
    (error,) = _fed(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n")
    assert isinstance(error, BadRequest) and error.status == 505
