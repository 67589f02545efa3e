"""The proxy's figures handed to the API over a unix socket (spacehub.proxyfigures): what the proxy's registry says
is what the API's registry yields, sample for sample; with no proxy there, the API's own figures only."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from spacehub.proxyfigures import ProxyFigures, serve_figures


class Figures(Collector):
    def __init__(self) -> None:
        self.requests = 0

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("spacehub_proxy_requests", "ended", labels=["space"])
        requests.add_metric(["admin/a"], self.requests)
        yield requests
        durations = HistogramMetricFamily("spacehub_proxy_request_duration_seconds", "d",
                                          labels=["space", "status_class"])
        durations.add_metric(["admin/a", "2xx"], [("0.1", 2), ("+Inf", 3)], 0.75)
        yield durations
        wakes = SummaryMetricFamily("spacehub_wakes", "w", labels=["outcome"])
        wakes.add_metric(["ready"], 1, 2.5)
        yield wakes


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture
def short_dir() -> Iterator[Path]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="figs") as folder:  # unix socket paths are short
        yield Path(folder)


def test_the_api_yields_what_the_proxy_counts_when_it_is_scraped(short_dir: Path) -> None:
    proxy_registry = CollectorRegistry(auto_describe=False)
    figures = Figures()
    proxy_registry.register(figures)
    path = short_dir / "proxy-metrics.sock"
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(serve_figures(proxy_registry, path))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        api_registry = CollectorRegistry(auto_describe=False)
        Counter("spacehub_api_requests", "api", registry=api_registry).inc(4)
        api_registry.register(ProxyFigures(path, timeout_s=5))
        figures.requests = 7
        first = samples(api_registry)
        assert first[("spacehub_proxy_requests_total", (("space", "admin/a"),))] == 7
        assert first[("spacehub_api_requests_total", ())] == 4
        for key, value in samples(proxy_registry).items():
            assert first[key] == value, key
        figures.requests = 9  # read at each scrape, not once
        assert samples(api_registry)[("spacehub_proxy_requests_total", (("space", "admin/a"),))] == 9
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_without_a_proxy_there_the_api_has_its_own_figures_only(short_dir: Path) -> None:
    api_registry = CollectorRegistry(auto_describe=False)
    Counter("spacehub_api_requests", "api", registry=api_registry).inc()
    api_registry.register(ProxyFigures(short_dir / "absent.sock", timeout_s=5))
    assert {name for name, _ in samples(api_registry)} == {"spacehub_api_requests_total",
                                                            "spacehub_api_requests_created"}
    stale = short_dir / "stale.sock"  # left by a killed serve: bound once, nobody listens
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(stale))
    api_registry.register(ProxyFigures(stale, timeout_s=5))
    assert {name for name, _ in samples(api_registry)} == {"spacehub_api_requests_total",
                                                            "spacehub_api_requests_created"}
