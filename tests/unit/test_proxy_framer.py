"""The response framer (the wire layer's `ResponseFramer`, the implementation the proxy runs): what a client gets
of its upstream's answer, for both ways of forwarding (`relay.Relay` and `exchange.Exchange`), and what it says
about the upstream connection (reusable or not) and the client's (kept or closed)."""

from __future__ import annotations

import pytest

from spacehub.proxy.errors import UpstreamFailed
from spacehub.proxy.wire import LAST_CHUNK
from spacehub.proxy.wireimpl import RequestHead, RequestParser, ResponseFramer

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
GET_10 = b"GET / HTTP/1.0\r\n\r\n"
HEAD = b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
POST = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n"
UPGRADE = b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"


class Heads:
    def __init__(self) -> None:
        self.heads: list[RequestHead] = []

    def on_message_begin(self) -> None:
        pass

    def on_head(self, head: RequestHead) -> None:
        self.heads.append(head)

    def on_body(self, body: bytes) -> None:
        pass

    def on_message_complete(self) -> None:
        pass


def request(raw: bytes) -> RequestHead:
    owner = Heads()
    RequestParser(owner, 65536).feed(raw)
    (head,) = owner.heads
    return head


def framer_for(raw_request: bytes, *, framer: ResponseFramer | None = None) -> ResponseFramer:
    framer = framer or ResponseFramer(65536)
    framer.start(request(raw_request), host_only_cookies=True)
    return framer


def feed(framer: ResponseFramer, *pieces: bytes) -> bytes:
    return b"".join(framer.feed(piece) for piece in pieces)


def reusable(framer: ResponseFramer) -> bool:
    """What both forwarding paths check before they return the upstream connection to the pool."""
    return framer.done and framer.response is not None and framer.response.keep_alive and not framer.unexpected


def test_an_answer_with_a_length_passes_as_it_came_and_leaves_the_connection_reusable() -> None:
    framer = framer_for(GET)
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    assert feed(framer, raw[:30], raw[30:]) == raw
    assert framer.done and framer.complete and reusable(framer) and not framer.close_client


def test_a_chunked_answer_is_chunked_again_for_the_client() -> None:
    framer = framer_for(GET)
    out = feed(framer, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", b"2\r\nde\r\n0\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    assert body == b"3\r\nabc\r\n2\r\nde\r\n" + LAST_CHUNK
    assert reusable(framer)


def test_a_body_that_runs_until_close_ends_at_eof_and_spends_the_connection() -> None:
    framer = framer_for(GET)
    out = feed(framer, b"HTTP/1.1 200 OK\r\n\r\nuntil ", b"the end")
    assert out.endswith(b"6\r\nuntil \r\n7\r\nthe end\r\n") and not framer.done
    assert framer.at_eof() == LAST_CHUNK  # re-chunked for an HTTP/1.1 client, whose connection survives
    assert framer.done and not reusable(framer) and not framer.close_client
    http10 = framer_for(GET_10)
    assert feed(http10, b"HTTP/1.1 200 OK\r\n\r\nbody").endswith(b"\r\n\r\nbody")
    assert http10.close_client and http10.at_eof() == b""


def test_eof_before_the_answer_or_inside_its_body_cuts_it_short() -> None:
    nothing = framer_for(GET)
    assert nothing.at_eof() is None and nothing.response is None
    truncated = framer_for(GET)
    feed(truncated, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    assert truncated.at_eof() is None and truncated.response is not None and not truncated.done


def test_interim_answers_go_to_http11_clients_only_and_the_final_one_follows() -> None:
    raw = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
           b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
    framer = framer_for(GET)
    out = feed(framer, raw)
    assert out.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
    assert out.endswith(b"\r\n\r\nok") and framer.response is not None and framer.response.status == 201
    assert reusable(framer)
    http10 = framer_for(GET_10)
    assert feed(http10, raw).startswith(b"HTTP/1.1 201 Created\r\n")


def test_bodyless_answers_are_over_at_their_head() -> None:
    head = framer_for(HEAD)
    out = feed(head, b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
    assert b"Content-Length: 1234" in out and out.endswith(b"\r\n\r\n")
    assert head.done and reusable(head)
    for status in (204, 304):
        framer = framer_for(GET)
        assert feed(framer, f"HTTP/1.1 {status} X\r\n\r\n".encode()).endswith(b"\r\n\r\n")
        assert framer.done and reusable(framer)


def test_connection_close_or_bytes_beyond_the_answer_spend_the_connection() -> None:
    closing = framer_for(GET)
    feed(closing, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    assert closing.done and not reusable(closing)
    extra = framer_for(GET)
    assert feed(extra, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n").endswith(b"\r\n\r\nok")
    assert extra.done and extra.unexpected and not reusable(extra)


def test_the_next_exchange_on_a_connection_reuses_its_framer() -> None:
    framer = framer_for(GET)
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    assert feed(framer, raw) == raw
    framer_for(GET, framer=framer)
    assert framer.response is None and not framer.done
    assert feed(framer, raw) == raw and reusable(framer)


def test_malformed_answers_are_upstream_failures() -> None:
    for raw in (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"NOT HTTP\r\n\r\n",
    ):
        with pytest.raises(UpstreamFailed):
            feed(framer_for(GET), raw)


def test_a_switch_to_an_upgrade_request_passes_its_head_and_the_first_bytes_of_the_new_protocol() -> None:
    framer = framer_for(UPGRADE)
    out = feed(framer, b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x00")
    head, _, rest = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"Upgrade: websocket" in head and b"Connection: upgrade" in head
    assert rest == b"\x81\x00"
    assert framer.switched and framer.done and framer.close_client and framer.response is not None
    assert framer.response.status == 101


def test_a_switch_nobody_asked_for_is_refused() -> None:
    with pytest.raises(UpstreamFailed, match="switched protocols"):
        feed(framer_for(GET), b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n")


def test_an_upgrade_request_answered_without_a_switch_closes_the_client_connection() -> None:
    framer = framer_for(UPGRADE)
    out = feed(framer, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno")
    assert b"Connection: close" in out.partition(b"\r\n\r\n")[0]
    assert framer.close_client and not framer.switched and reusable(framer)


def test_an_answer_that_comes_while_the_request_body_is_still_coming_closes_the_client_connection() -> None:
    framer = framer_for(POST)
    framer.request_pending = True
    out = feed(framer, b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n")
    assert b"Connection: close" in out and framer.close_client
    framer_for(POST, framer=framer)  # the next exchange starts with the request's body sent
    assert not framer.request_pending
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    assert feed(framer, raw) == raw and not framer.close_client
