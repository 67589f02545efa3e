"""The proxy's /metrics figures, handed to the API of the same `spacehub serve` over a unix socket.

Under `serve` the proxy and the API are two processes, yet the platform host has one `/metrics` (an admin's
token, answered by the API). The proxy's figures live in the proxy's memory (spacehub.metrics.ProxyCollector),
so the proxy serves them on `Settings.proxy_figures_socket` under the run dir (only this user can reach it): a
connection gets the Prometheus text and is closed. The API's registry holds a `ProxyFigures` collector that
reads them at scrape time and yields them beside its own. Run apart, no proxy serves that socket (each
`spacehub proxy --health` serves its own /metrics) and the API's /metrics has its own figures only.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)


async def serve_figures(registry: CollectorRegistry, path: Path) -> asyncio.AbstractServer:
    """Answer every connection on `path` with `registry`'s figures (read now, on the proxy's loop: the
    collectors read plain counters and tables, as a scrape of the proxy alone would)."""

    async def answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(generate_latest(registry))
            await writer.drain()
        except ConnectionError:
            pass  # the API gave up waiting
        finally:
            writer.close()

    path.unlink(missing_ok=True)
    return await asyncio.start_unix_server(answer, path=str(path))


class ProxyFigures(Collector):
    """The proxy process's figures, read from its socket at each scrape; none when no proxy serves it."""

    def __init__(self, path: Path, timeout_s: float) -> None:
        self.path, self.timeout_s = path, timeout_s

    def _read(self) -> str | None:
        if not self.path.exists():
            return None  # the API runs alone: each proxy serves its own /metrics
        chunks = []
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout_s)
                sock.connect(str(self.path))
                while chunk := sock.recv(1 << 16):
                    chunks.append(chunk)
        except OSError as exc:
            log.warning("/metrics goes without the proxy's figures: %s: %s", self.path, exc)
            return None
        return b"".join(chunks).decode()

    def collect(self) -> Iterator[Metric]:
        text = self._read()
        if text:
            yield from text_string_to_metric_families(text)
