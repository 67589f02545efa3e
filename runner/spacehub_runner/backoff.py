"""Crash handling: an app that exits is restarted after a growing delay, and given up on after a few tries.

The state lives on the space's row (SQL, so a supervisor restart forgets nothing): `restarts` (crashes in a
row so far), `crashed_at` (the last one) and `restart_at` (when the pending restart is due; the supervisor
enqueues it then). The n-th crash in a row waits `SPACEHUB_RESTART_BACKOFF_S * 2**(n-1)`, at most
`SPACEHUB_RESTART_BACKOFF_MAX_S`; the crash after `SPACEHUB_MAX_RESTARTS` restarts marks the space
`RUNTIME_ERROR`, with the app's last log lines and the restart count in its message. An app that ran for
SPACEHUB_RESTART_RESET_S after its restart before it crashed again has recovered: the count starts again (how
long it ran is the time since the last crash less the delay before its restart). An owner's restart or a new
build resets the count too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from spacehub.settings import Settings
from spacehub.stages import Stage
from spacehub.store.models import Space
from spacehub.transitions import transition


@dataclass(frozen=True)
class CrashDecision:
    attempt: int  # the restart this crash leads to (1 = first); for a give-up, the restarts already made + 1
    delay_s: float  # 0 for a give-up
    give_up: bool


def decide(settings: Settings, restarts: int, crashed_at: datetime | None, now: datetime) -> CrashDecision:
    """What to do about a crash, given the crashes in a row before it."""
    in_a_row = False
    if crashed_at is not None and restarts > 0:
        ran_for = (now - crashed_at).total_seconds() - delay_before(settings, restarts)
        in_a_row = ran_for < settings.restart_reset_s
    attempt = (restarts if in_a_row else 0) + 1
    if attempt > settings.max_restarts:
        return CrashDecision(attempt=attempt, delay_s=0.0, give_up=True)
    return CrashDecision(attempt=attempt, delay_s=delay_before(settings, attempt), give_up=False)


def delay_before(settings: Settings, attempt: int) -> float:
    """The wait before restart number `attempt` (1 = the first after a crash)."""
    return float(min(settings.restart_backoff_s * 2 ** (attempt - 1), settings.restart_backoff_max_s))


def record_crash(settings: Settings, space: Space, reason: str, now: datetime,
                 log_tail: Sequence[str] = (), *, by: str = "supervisor") -> CrashDecision:
    """Schedule the space's next restart (stage APP_STARTING, `restart_at` set) or give up (RUNTIME_ERROR)."""
    decision = decide(settings, space.restarts or 0, space.crashed_at, now)
    space.crashed_at = now
    if decision.give_up:
        made = decision.attempt - 1
        space.restarts, space.restart_at = made, None
        message = f"{reason}; gave up after {made} restart{'s' if made != 1 else ''}"
        if log_tail and "log lines" not in reason:  # (a failed start's reason already carries them)
            message += "; its last log lines:\n" + "\n".join(log_tail)
        transition(space, Stage.RUNTIME_ERROR, message, by=by)
        return decision
    space.restarts = decision.attempt
    space.restart_at = now + timedelta(seconds=decision.delay_s)
    transition(space, Stage.APP_STARTING, f"{reason.splitlines()[0]}; restarting in {decision.delay_s:g}s "
               f"(restart {decision.attempt} of {settings.max_restarts})", by=by)
    return decision


def is_due(space: Space, now: datetime) -> bool:
    return (space.stage == Stage.APP_STARTING and space.handle is None and space.restart_at is not None
            and space.restart_at <= now)
