"""The one function that changes a space's stage: it consults the transition table, records who moved the space
and why, and leaves the publishing to the route writer (`spacehub.routetable`), which runs when the change commits.

An illegal move is a bug. With SPACEHUB_STRICT_TRANSITIONS (tests) it raises; in production it is logged and
the move is made anyway, because the caller acts on what the world already is (an app that died is dead
whatever the table says) and a refused stage would only leave the row further from the truth.
"""

from __future__ import annotations

import logging

from sqlalchemy import update
from sqlalchemy.orm import Session

from spacehub import routetable
from spacehub.settings import Settings
from spacehub.stages import TRANSITIONS, Stage
from spacehub.store.models import Space, utcnow

log = logging.getLogger("spacehub.transitions")

# Set once per process from the settings at the entry point (`configure`), read by every transition.
_strict = False


class IllegalTransition(RuntimeError):
    """A move the transition table forbids: a bug in the caller, never a user's error."""


def configure(settings: Settings) -> None:
    global _strict
    _strict = settings.strict_transitions


def is_legal(current: Stage, to: Stage) -> bool:
    # Staying put is not a move: the message may change while the stage stays.
    return current == to or to in TRANSITIONS[current]


def transition(space: Space, to: Stage, message: str | None = None, *, by: str) -> None:
    """Move `space` to stage `to`, saying why (`message`, shown to the owner; None keeps the current one) and
    who (`by`, e.g. "api", "build", "supervisor").

    The row is changed in its session; the route and the proxy's view follow when that session commits.
    """
    current = Stage(space.stage) if space.stage is not None else Stage.NO_APP_FILE
    _check(space.id, current, to, by)
    if current != to:
        log.info("space %s: %s -> %s by %s%s", space.id, current, to, by, f" ({message})" if message else "")
    space.stage = to
    if message is not None:
        space.message = message
    space.stage_by, space.stage_at = by, utcnow()


def transition_if(session: Session, space_id: int, expect: Stage, to: Stage, message: str, *, by: str) -> bool:
    """Compare-and-set: move the space from `expect` to `to` only if it is still in `expect` (one SQL update,
    so that many processes asking at once cause one move). True when this call made the move."""
    _check(space_id, expect, to, by)
    moved = session.execute(
        update(Space).where(Space.id == space_id, Space.stage == expect)
        .values(stage=to, message=message, stage_by=by, stage_at=utcnow())
        .execution_options(synchronize_session=False))
    if getattr(moved, "rowcount", 0) != 1:
        return False
    log.info("space %s: %s -> %s by %s (%s)", space_id, expect, to, by, message)
    routetable.mark_changed(session, space_id)
    return True


def _check(space_id: int | None, current: Stage, to: Stage, by: str) -> None:
    if is_legal(current, to):
        return
    text = f"space {space_id}: illegal transition {current} -> {to} by {by}"
    if _strict:
        raise IllegalTransition(text)
    log.error("%s (made anyway: the table misses a case)", text)
