"""Traffic per space, for /metrics: requests by the class of their answer's status, bytes each way, and how long
each request took, as a histogram.

Counted when a request to a space ends (`ProxyServer(traffic=TrafficCounter())`), into plain ints and lists:
one dict lookup, a bisect and a few additions per request, no lock and no label lookup. Only the proxy's event
loop writes; a scrape reads from another thread and turns the counts into Prometheus families then
(`spacehub.metrics.ProxyCollector`). Under the GIL a reader sees whole numbers, at worst one request behind.

What a request counts as (`record`):
  - status: that of the answer the client got (the app's, or the proxy's own 502/504/400); 0 when the client
    went away before any answer began (class "none"); a 101 upgrade is a 1xx;
  - bytes: what the client connection received and sent while the request was its current one, heads and
    bodies (and the frames of an upgraded connection) included, as on the wire;
  - duration: from its head having been read to its answer's end, waits for a waking space included. Streams
    (server-sent events, WebSockets) count their whole length, so they land in the top buckets.
"""

from __future__ import annotations

from typing import Final

# Upper bounds (seconds) of the duration buckets; a last bucket holds what is longer (Prometheus's +Inf).
DURATION_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Status classes by `status // 100`: 0 ("none": no answer) to 9; statuses beyond 999 count as 0.
STATUS_CLASSES: Final = 10


class StatusTraffic:
    """The requests of one space and status class: how many fell in each duration bucket, and their seconds
    summed. (Native attributes when compiled: the sum is a C double, not a float object made per request.)"""

    __slots__ = ("counts", "seconds")

    def __init__(self) -> None:
        self.counts: list[int] = [0] * (len(DURATION_BUCKETS) + 1)
        self.seconds = 0.0


class SpaceTraffic:
    """One space's counts: `by_status[c]` for status class `c` (None until its first request), and its bytes."""

    __slots__ = ("by_status", "bytes_in", "bytes_out")

    def __init__(self) -> None:
        self.by_status: list[StatusTraffic | None] = [None] * STATUS_CLASSES
        self.bytes_in = 0
        self.bytes_out = 0


class TrafficCounter:
    """`spaces`: a `SpaceTraffic` per space id, made at its first request."""

    def __init__(self) -> None:
        self.spaces: dict[int, SpaceTraffic] = {}

    def add_bytes(self, space_id: int, bytes_in: int, bytes_out: int) -> None:
        traffic = self.spaces.get(space_id)
        if traffic is None:
            traffic = self.spaces[space_id] = SpaceTraffic()
        traffic.bytes_in += bytes_in
        traffic.bytes_out += bytes_out

    def record(self, space_id: int, status: int, bytes_in: int, bytes_out: int, seconds: float) -> None:
        traffic = self.spaces.get(space_id)
        if traffic is None:
            traffic = self.spaces[space_id] = SpaceTraffic()
        status_class = status // 100
        if status_class >= STATUS_CLASSES or status_class < 0:
            status_class = 0
        counts = traffic.by_status[status_class]
        if counts is None:
            counts = traffic.by_status[status_class] = StatusTraffic()
        # A scan from the shortest bound, not a bisect: most requests stop at the first or second bucket, and
        # compiled it compares C doubles without a call.
        bucket = 0
        for bound in DURATION_BUCKETS:
            if seconds <= bound:
                break
            bucket += 1
        counts.counts[bucket] += 1
        counts.seconds += seconds
        traffic.bytes_in += bytes_in
        traffic.bytes_out += bytes_out
