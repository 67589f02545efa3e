"""The proxy's own CPU per request, without sockets: one request and its response fed through a client connection
and a pooled upstream connection whose transports only collect what is written.

What it leaves out (the kernel, the event loop, the load generator, other processes on the same cores) is what
`bench_proxy.py` measures beside nginx; this isolates the proxy's per-request Python (compiled or not, see
`spacehub.proxy.compiled()`) so that a change to it can be weighed in seconds, e.g. under `perf record`.

Run as `python tests/bench/bench_proxy_path.py [REQUESTS]`: prints the best of five runs in µs per request, with
the per-space traffic counts for /metrics (as `spacehub serve` runs it) and without them (what they cost).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import uvloop
from bench_spacehub_proxy import SPACE_LABEL, make_resolver

from spacehub.proxy import ProxyServer, compiled
from spacehub.proxy.activity import RequestCounter
from spacehub.proxy.channel import UpstreamChannel
from spacehub.proxy.connection import ClientConnection
from spacehub.proxy.routing import Upstream
from spacehub.proxy.traffic import TrafficCounter

UPSTREAM_PORT = 9  # never connected to: the pooled connection below stands for it
# What bench_proxy.py's clients send (a platform token and session cookie to strip) and its upstream answers.
REQUEST = (
    f"GET / HTTP/1.1\r\nHost: {SPACE_LABEL}.space.localhost\r\n"
    "Authorization: Bearer sh_0123456789abcdef0123456789abcdef\r\n"
    "Cookie: spacehub_session=s3ss10n; theme=dark\r\nUser-Agent: spacehub-bench\r\nAccept: */*\r\n\r\n"
).encode()
RESPONSE = (
    b"HTTP/1.1 200 OK\r\ndate: Thu, 03 Dec 2026 14:00:00 GMT\r\nserver: uvicorn\r\n"
    b"content-type: text/plain\r\ncontent-length: 200\r\n\r\n" + b"x" * 200
)


class Transport:
    """Just enough of an asyncio transport: what is written is kept (and dropped between runs)."""

    def __init__(self, peer: tuple[str, int]) -> None:
        self.peer = peer
        self.written: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def writelines(self, data: list[bytes]) -> None:
        self.written.extend(data)

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self.peer if name == "peername" else default

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True


async def measure(requests: int, data_dir: Path, *, traffic: bool) -> float:
    proxy = ProxyServer(make_resolver(UPSTREAM_PORT, data_dir), activity=RequestCounter(),
                        traffic=TrafficCounter() if traffic else None)
    await proxy.start("127.0.0.1", 0)
    upstream, upstream_side = UpstreamChannel(), Transport(("127.0.0.1", UPSTREAM_PORT))
    upstream.connection_made(upstream_side)  # type: ignore[arg-type]
    proxy.pool.release(Upstream(host="127.0.0.1", port=UPSTREAM_PORT), upstream)
    client, client_side = ClientConnection(proxy), Transport(("127.0.0.1", 40000))
    client.connection_made(client_side)  # type: ignore[arg-type]

    def one() -> None:
        client.data_received(REQUEST)
        upstream.data_received(RESPONSE)

    for _ in range(2000):  # warm up; and check that the exchange really went through
        one()
    forwarded, answered = upstream_side.written[-1], client_side.written[-1]
    if not forwarded.startswith(b"GET / HTTP/1.1\r\n") or b"sh_" in forwarded or not answered.endswith(b"x" * 200):
        raise RuntimeError(f"the exchange did not go through: {forwarded!r} / {answered!r}")
    best = float("inf")
    for _ in range(5):
        upstream_side.written.clear()
        client_side.written.clear()
        started = time.process_time()  # CPU time: a neighbour taking the CPU away is not counted
        for _ in range(requests):
            one()
        best = min(best, (time.process_time() - started) / requests)
    await proxy.close()
    return best


def main() -> None:
    requests = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    with tempfile.TemporaryDirectory(prefix="spacehub-bench-path-") as tmp:
        # As `spacehub serve` runs the proxy (uvloop, traffic counted), then without the traffic counts.
        # Interleaved, best of three each: a neighbour's burst of load then spoils one turn, not one side.
        counted = bare = float("inf")
        for _ in range(3):
            counted = min(counted, uvloop.run(measure(requests, Path(tmp), traffic=True)))
            bare = min(bare, uvloop.run(measure(requests, Path(tmp), traffic=False)))
    build = "compiled" if compiled() else "plain Python"
    print(f"proxy path ({build}): {counted * 1e6:.2f} µs per request (best of 3x5 runs of {requests}); without the "
          f"per-space traffic counts: {bare * 1e6:.2f} µs ({(counted - bare) * 1e6:+.2f} µs)")


if __name__ == "__main__":
    main()
