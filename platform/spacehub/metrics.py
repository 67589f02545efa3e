"""Prometheus metrics, `GET /metrics` (text format, an admin's token).

Nothing is counted twice and nothing slows a request: the proxy already counts requests per space for sleep and
wake (`spacehub.proxy.activity.RequestCounter`), and their status, bytes and durations in plain counters
(`spacehub.proxy.traffic.TrafficCounter`), the gateway already holds the space and route tables, SQL holds
builds, stages and GPU leases, and RQ keeps its queues in Redis. Each collector below reads one of those at scrape
time. Only the API's own requests are counted as they happen (a middleware: the API is not the proxy's path).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from spacehub.proxy.traffic import DURATION_BUCKETS, SpaceTraffic, TrafficCounter
from spacehub.stages import SERVING, Stage
from spacehub.store.models import Build, BuildStatus, GpuAllocation, Space

if TYPE_CHECKING:
    import redis

    from spacehub.edge.gateway import SpaceResolver
    from spacehub.proxy.activity import RequestCounter
    from spacehub.settings import Settings
    from spacehub.store.db import Database

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def new_registry() -> CollectorRegistry:
    """A registry of this process's own (prometheus_client's global one would mix in whatever imported it)."""
    return CollectorRegistry(auto_describe=False)


class ApiMetrics:
    """The API's requests by method and status class, and their latency (an ASGI middleware feeds it)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("spacehub_api_requests", "API and web UI requests", ["method", "status_class"],
                                registry=registry)
        self.latency = Histogram("spacehub_api_request_duration_seconds", "API and web UI request latency",
                                 ["method", "status_class"], buckets=LATENCY_BUCKETS, registry=registry)
        self.bytes_out = Counter("spacehub_api_response_bytes", "Bytes of API and web UI response bodies",
                                 registry=registry)

    def middleware(self, app: Any) -> Any:
        metrics = self

        async def measured(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            started = time.perf_counter()
            status = [500]

            async def sending(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                elif message["type"] == "http.response.body":
                    metrics.bytes_out.inc(len(message.get("body", b"")))
                await send(message)

            try:
                await app(scope, receive, sending)
            finally:
                labels = (scope["method"], f"{status[0] // 100}xx")
                metrics.requests.labels(*labels).inc()
                metrics.latency.labels(*labels).observe(time.perf_counter() - started)

        return measured


class ProxyCollector(Collector):
    """The proxy's counts per space (requests ended, requests and streams open; with `traffic`: requests by status
    class, bytes each way, durations), its route table, and the wakes it waited for; spaces named by
    `owner/name` as the gateway's space table has them."""

    def __init__(self, counter: RequestCounter, resolver: SpaceResolver, traffic: TrafficCounter | None = None) -> None:
        self.counter = counter
        self.resolver = resolver
        self.traffic = traffic

    def collect(self) -> Iterator[Metric]:
        names = {entry.id: entry.repo_id for entry in self.resolver.spaces.values()}
        if self.traffic is not None:
            yield from _traffic_metrics(self.traffic, names)
        requests = CounterMetricFamily("spacehub_proxy_requests", "Requests to a space that ended (Gradio's "
                                       "heartbeat stream aside)", labels=["space"])
        open_now = GaugeMetricFamily("spacehub_proxy_open_requests", "Requests and streams to a space open now",
                                     labels=["space"])
        for space_id, count in list(self.counter.spaces.items()):
            name = names.get(space_id, str(space_id))
            requests.add_metric([name], count.requests)
            open_now.add_metric([name], count.in_flight)
        yield requests
        yield open_now
        yield GaugeMetricFamily("spacehub_proxy_routes", "Spaces with a route (serving traffic)",
                                value=len(self.resolver.routes))
        routed = self.resolver.routes
        frozen = sum(1 for label, entry in self.resolver.spaces.items()
                     if entry.stage in SERVING and label not in routed)
        yield GaugeMetricFamily("spacehub_spaces_frozen", "Spaces that should serve but have no route: frozen "
                                "while idle (or being repaired)", value=frozen)
        waker = self.resolver.waker
        if waker is not None:
            wakes = SummaryMetricFamily("spacehub_wakes", "Wakes this proxy waited for, by outcome (ready: the "
                                        "route came back; gave_up: the space stopped wanting to run or the wake "
                                        "timed out), and how long each took in seconds", labels=["outcome"])
            for outcome, (wakes_seen, seconds) in sorted(waker.wake_stats.items()):
                wakes.add_metric([outcome], wakes_seen, seconds)
            yield wakes


# Status classes always reported per space (so that a rate of 5xx reads 0, not absent); 0 is "none": the client
# left before any answer. Others (6xx-9xx, from an odd app) appear once seen.
_STATUS_CLASSES = (0, 1, 2, 3, 4, 5)


def _status_label(status_class: int) -> str:
    return "none" if status_class == 0 else f"{status_class}xx"


def _traffic_metrics(traffic: TrafficCounter, names: dict[int, str]) -> Iterable[Metric]:
    requests = CounterMetricFamily("spacehub_proxy_responses", "Requests to a space that ended, by the status "
                                   "class of the answer the client got (none: it left before any; Gradio's "
                                   "heartbeat stream included)", labels=["space", "status_class"])
    durations = HistogramMetricFamily("spacehub_proxy_request_duration_seconds", "Time from a request's head to "
                                      "its answer's end (streams: their whole length), by status class",
                                      labels=["space", "status_class"])
    bytes_in = CounterMetricFamily("spacehub_proxy_received_bytes", "Bytes received from clients for requests "
                                   "to a space (heads, bodies, upgraded connections)", labels=["space"])
    bytes_out = CounterMetricFamily("spacehub_proxy_sent_bytes", "Bytes sent to clients for requests to a space "
                                    "(heads, bodies, upgraded connections)", labels=["space"])
    spaces: list[tuple[int, SpaceTraffic]] = list(traffic.spaces.items())  # one step: the loop may add one
    for space_id, counts in spaces:
        name = names.get(space_id, str(space_id))
        for status_class, of_class in enumerate(list(counts.by_status)):
            if of_class is None and status_class not in _STATUS_CLASSES:
                continue
            label = _status_label(status_class)
            per_bucket = list(of_class.counts) if of_class is not None else [0] * (len(DURATION_BUCKETS) + 1)
            cumulative, buckets = 0, []
            for bound, n in zip((*DURATION_BUCKETS, float("inf")), per_bucket, strict=True):
                cumulative += n
                buckets.append((_bound_label(bound), cumulative))
            requests.add_metric([name, label], cumulative)
            durations.add_metric([name, label], buckets, of_class.seconds if of_class is not None else 0.0)
        bytes_in.add_metric([name], counts.bytes_in)
        bytes_out.add_metric([name], counts.bytes_out)
    yield requests
    yield durations
    yield bytes_in
    yield bytes_out


def _bound_label(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


class PlatformCollector(Collector):
    """What SQL and Redis say, read at scrape time: spaces by stage, builds by outcome and their duration, the
    build and ops queues, GPU slots held."""

    def __init__(self, settings: Settings, db: Database, redis_conn: redis.Redis) -> None:
        self.settings = settings
        self.db = db
        self.redis = redis_conn

    def collect(self) -> Iterator[Metric]:
        with self.db.session() as session:
            stages = {str(stage): n for stage, n in session.execute(
                select(Space.stage, func.count()).where(Space.repo_type == "space").group_by(Space.stage))}
            builds = session.execute(select(Build.status, Build.started_at, Build.finished_at)).all()
            gpus = dict(session.execute(select(GpuAllocation.device, func.count())
                                        .group_by(GpuAllocation.device)).all())
        by_stage = GaugeMetricFamily("spacehub_spaces", "Spaces by stage", labels=["stage"])
        for stage in Stage:
            by_stage.add_metric([str(stage)], stages.get(str(stage), 0))
        yield by_stage
        yield from _build_metrics(builds)
        yield from self._queue_metrics()
        held = GaugeMetricFamily("spacehub_gpu_slots_held", "GPU slots held by spaces, per device",
                                 labels=["device"])
        for device in sorted(set(self.settings.gpus or []) | set(gpus)):
            held.add_metric([device], gpus.get(device, 0))
        yield held
        if self.settings.gpus is not None:
            yield GaugeMetricFamily("spacehub_gpu_slots", "GPU slots there are to hand out (devices x share)",
                                    value=len(self.settings.gpus) * self.settings.gpu_share)

    def _queue_metrics(self) -> Iterable[Metric]:
        from rq.queue import Queue

        from spacehub.queue import BUILDS, OPS

        depth = GaugeMetricFamily("spacehub_queue_jobs", "Jobs in a queue by state (queued: waiting for a "
                                  "worker; started: being worked on)", labels=["queue", "state"])
        for name in (BUILDS, OPS):
            queue = Queue(name, connection=self.redis)
            depth.add_metric([name, "queued"], queue.count)
            depth.add_metric([name, "started"], queue.started_job_registry.count)
        yield depth


def _build_metrics(rows: Iterable[Any]) -> Iterable[Metric]:
    outcomes = GaugeMetricFamily("spacehub_builds", "Builds recorded, by outcome (queued, running: now)",
                                 labels=["outcome"])
    durations = SummaryMetricFamily("spacehub_build_duration_seconds", "Time from a build's start to its end, "
                                    "by outcome", labels=["outcome"])
    counts: dict[str, int] = {}
    spent: dict[str, tuple[int, float]] = {}
    for status, started, finished in rows:
        counts[status] = counts.get(status, 0) + 1
        if started is not None and finished is not None:
            n, total = spent.get(status, (0, 0.0))
            spent[status] = (n + 1, total + max(0.0, (finished - started).total_seconds()))
    for status in (BuildStatus.QUEUED, BuildStatus.RUNNING, BuildStatus.SUCCEEDED, BuildStatus.FAILED,
                   BuildStatus.SUPERSEDED):
        outcomes.add_metric([status], counts.get(status, 0))
        n, total = spent.get(status, (0, 0.0))
        if status not in BuildStatus.ACTIVE:
            durations.add_metric([status], n, total)
    yield outcomes
    yield durations
