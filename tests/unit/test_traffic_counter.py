"""`TrafficCounter.record`: which bucket and status class a request lands in (Prometheus' `le`: a duration
equal to a bound belongs to that bound's bucket)."""

from __future__ import annotations

import pytest

from spacehub.proxy.traffic import DURATION_BUCKETS, STATUS_CLASSES, TrafficCounter


@pytest.mark.parametrize(("seconds", "bucket"), [
    (0.0, 0),
    (DURATION_BUCKETS[0], 0),
    (DURATION_BUCKETS[0] + 1e-9, 1),
    (1.0, DURATION_BUCKETS.index(1.0)),
    (DURATION_BUCKETS[-1], len(DURATION_BUCKETS) - 1),
    (DURATION_BUCKETS[-1] + 1, len(DURATION_BUCKETS)),  # beyond the last bound: +Inf
])
def test_a_duration_lands_in_the_bucket_of_the_first_bound_it_does_not_exceed(seconds: float, bucket: int) -> None:
    traffic = TrafficCounter()
    traffic.record(3, 200, 10, 20, seconds)
    of_class = traffic.spaces[3].by_status[2]
    assert of_class is not None
    assert of_class.counts == [1 if i == bucket else 0 for i in range(len(DURATION_BUCKETS) + 1)]
    assert of_class.seconds == seconds


@pytest.mark.parametrize(("status", "status_class"), [(0, 0), (101, 1), (204, 2), (308, 3), (404, 4), (503, 5),
                                                      (999, 9), (1000, 0)])
def test_a_status_lands_in_its_class(status: int, status_class: int) -> None:
    traffic = TrafficCounter()
    traffic.record(1, status, 0, 0, 0.001)
    by_status = traffic.spaces[1].by_status
    assert len(by_status) == STATUS_CLASSES
    assert [i for i, of_class in enumerate(by_status) if of_class is not None] == [status_class]


def test_spaces_and_bytes_add_up_apart() -> None:
    traffic = TrafficCounter()
    traffic.record(1, 200, 100, 1000, 0.01)
    traffic.record(1, 500, 5, 50, 0.02)
    traffic.record(2, 200, 7, 70, 0.03)
    one, two = traffic.spaces[1], traffic.spaces[2]
    assert (one.bytes_in, one.bytes_out, two.bytes_in, two.bytes_out) == (105, 1050, 7, 70)
    ok, failed = one.by_status[2], one.by_status[5]
    assert ok is not None and failed is not None
    assert (sum(ok.counts), sum(failed.counts)) == (1, 1)
    assert ok.seconds == pytest.approx(0.01) and failed.seconds == pytest.approx(0.02)
