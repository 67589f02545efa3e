"""The pure parts of sleep, drains and crash backoff: activity counting, "drained", restart delays."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from spacehub.edge.activity import Activity, ActivityTracker
from spacehub.settings import Settings
from spacehub.stages import Stage
from spacehub.store.models import Space
from spacehub_runner import backoff, diskguard, drain


def settings(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(data_dir=tmp_path, **overrides)  # type: ignore[arg-type]


# -- activity ---------------------------------------------------------------------------------------------


def test_a_request_counts_from_start_to_end_and_heartbeats_do_not_count() -> None:
    tracker = ActivityTracker("redis://unused", flush_s=1.0)
    tracker.request_start(7, b"/gradio_api/heartbeat/abc")
    assert tracker.snapshot(100.0) == {}  # a heartbeat alone is no activity at all

    tracker.request_start(7, b"/gradio_api/queue/data?session_hash=x")
    tracker.request_start(7, b"/")
    tracker.request_end(7, b"/")
    fields = tracker.snapshot(100.0)
    record = Activity.decode(fields["7"])
    assert record is not None and record.in_flight == 1 and record.last_active == 100.0

    # Still open at the next flush: written again, "active" as of that flush, even with nothing new.
    record = Activity.decode(tracker.snapshot(105.0)["7"])
    assert record is not None and record.in_flight == 1 and record.last_active == 105.0

    tracker.request_end(7, b"/gradio_api/heartbeat/abc")  # the heartbeat's end changes nothing either
    tracker.request_end(7, b"/gradio_api/queue/data?session_hash=x")
    record = Activity.decode(tracker.snapshot(106.0)["7"])
    assert record is not None and record.in_flight == 0 and record.last_idle > 0
    assert tracker.snapshot(107.0) == {}  # idle and unchanged: nothing to write


def test_activity_round_trips_and_open_requests_of_a_vanished_proxy_expire() -> None:
    record = Activity(1000.0, 2, 990.0)
    assert Activity.decode(record.encode()) == record
    assert Activity.decode(b"garbage") is None
    assert record.busy(now=1001.0, flush_s=1.0)
    assert record.idle_for(now=1001.0, flush_s=1.0) == 0.0
    # Not refreshed for many flushes: the proxy that counted these requests is gone.
    assert not record.busy(now=1100.0, flush_s=1.0)
    assert record.idle_for(now=1100.0, flush_s=1.0) == 100.0


# -- drains -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("activity", "now", "drained"),
    [
        (None, 101.0, False),  # too early: requests on the old route may not be published yet
        (None, 102.0, True),  # never any request
        (Activity(101.5, 0, 101.5), 102.5, True),  # all ended
        (Activity(102.5, 1, 90.0), 102.5, False),  # a stream that began before the switch is still open
        (Activity(102.5, 1, 101.5), 102.5, True),  # the count fell to zero after the switch: old ones done
        (Activity(102.5, 3, 100.5), 102.5, False),  # fell to zero only before the switch was seen
    ],
)
def test_an_old_app_is_drained_once_no_request_of_its_time_is_left(activity: Activity | None, now: float,
                                                                   drained: bool) -> None:
    assert drain.is_drained(activity, retired_at=100.0, now=now, flush_s=1.0) is drained


# -- crash backoff ------------------------------------------------------------------------------------------


def crashed_space(**fields: object) -> Space:
    space = Space(owner="a", name="b", stage=Stage.RUNNING, restarts=0)
    for key, value in fields.items():
        setattr(space, key, value)
    return space


def test_restarts_wait_longer_each_time_and_then_give_up(tmp_path: Path) -> None:
    config = settings(tmp_path, restart_backoff_s=10, restart_backoff_max_s=30, max_restarts=4)
    space = crashed_space()
    now = datetime(2026, 1, 1)
    delays = []
    for _ in range(4):
        decision = backoff.record_crash(config, space, "the app exited with code 1", now, ["line 1", "line 2"])
        assert not decision.give_up and space.stage == Stage.APP_STARTING
        assert space.restart_at == now + timedelta(seconds=decision.delay_s)
        delays.append(decision.delay_s)
        now += timedelta(seconds=decision.delay_s + 2)  # restarted, ran 2 s, crashed again
    assert delays == [10, 20, 30, 30]
    assert "restarting in 30s (restart 4 of 4)" in space.message

    decision = backoff.record_crash(config, space, "the app exited with code 1", now, ["line 1", "line 2"])
    assert decision.give_up
    assert space.stage == Stage.RUNTIME_ERROR and space.restart_at is None
    assert space.message.startswith("the app exited with code 1; gave up after 4 restarts")
    assert space.message.endswith("its last log lines:\nline 1\nline 2")


def test_an_app_that_ran_long_enough_starts_a_new_row(tmp_path: Path) -> None:
    config = settings(tmp_path, restart_backoff_s=10, restart_backoff_max_s=300, max_restarts=2,
                      restart_reset_s=600)
    now = datetime(2026, 1, 1)
    space = crashed_space(restarts=2, crashed_at=now - timedelta(seconds=20 + 700))  # ran 700 s after its restart
    decision = backoff.record_crash(config, space, "crash", now)
    assert (decision.attempt, decision.delay_s, decision.give_up) == (1, 10, False)

    space = crashed_space(restarts=2, crashed_at=now - timedelta(seconds=20 + 30))  # ran 30 s: in a row
    assert backoff.record_crash(config, space, "crash", now).give_up


def test_a_restart_is_due_only_when_its_time_has_come(tmp_path: Path) -> None:
    now = datetime(2026, 1, 1)
    waiting = crashed_space(stage=Stage.APP_STARTING, restart_at=now + timedelta(seconds=5))
    assert not backoff.is_due(waiting, now)
    assert backoff.is_due(waiting, now + timedelta(seconds=5))
    started = crashed_space(stage=Stage.APP_STARTING, restart_at=now, handle={"runtime": "process"})
    assert not backoff.is_due(started, now)


# -- disk watermark ------------------------------------------------------------------------------------------


def test_builds_and_starts_refuse_below_the_free_disk_watermark(tmp_path: Path) -> None:
    assert diskguard.refusal(settings(tmp_path, min_free_disk_mb=1), "build") is None
    message = diskguard.refusal(settings(tmp_path, min_free_disk_mb=10**12), "build")
    assert message is not None
    assert "not enough free disk to build" in message and "SPACEHUB_MIN_FREE_DISK_MB" in message
    assert str(tmp_path) in message
