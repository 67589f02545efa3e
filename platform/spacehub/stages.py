"""The one lifecycle enum of a space, with exactly the Hub's stage names, and its transition table.

Hub clients treat any stage they don't know as final, so no other names may appear. There are no boolean
"pending" flags: everything a space is doing is its stage (plus a human message).
"""

from __future__ import annotations

from enum import StrEnum

from spacehub.errors import Conflict


class Stage(StrEnum):
    NO_APP_FILE = "NO_APP_FILE"
    CONFIG_ERROR = "CONFIG_ERROR"
    BUILDING = "BUILDING"
    BUILD_ERROR = "BUILD_ERROR"
    APP_STARTING = "APP_STARTING"
    RUNNING = "RUNNING"
    RUNNING_BUILDING = "RUNNING_BUILDING"
    RUNNING_APP_STARTING = "RUNNING_APP_STARTING"
    RUNTIME_ERROR = "RUNTIME_ERROR"
    DELETING = "DELETING"
    STOPPED = "STOPPED"
    PAUSED = "PAUSED"
    SLEEPING = "SLEEPING"


S = Stage
_ERRORS = {S.NO_APP_FILE, S.CONFIG_ERROR, S.BUILD_ERROR, S.RUNTIME_ERROR}
_ANY_BUT_DELETING = set(Stage) - {S.DELETING}

# Stage -> stages it may move to. A new push may start a build from any resting stage; DELETING is terminal.
TRANSITIONS: dict[Stage, frozenset[Stage]] = {
    S.NO_APP_FILE: frozenset({S.BUILDING, S.NO_APP_FILE, S.CONFIG_ERROR, S.DELETING, S.PAUSED, S.STOPPED}),
    S.CONFIG_ERROR: frozenset({S.BUILDING, S.NO_APP_FILE, S.CONFIG_ERROR, S.DELETING, S.PAUSED, S.STOPPED}),
    S.BUILDING: frozenset({S.BUILDING, S.APP_STARTING, S.BUILD_ERROR, S.CONFIG_ERROR, S.NO_APP_FILE, S.RUNNING,
                           S.DELETING, S.PAUSED, S.STOPPED}),
    S.BUILD_ERROR: frozenset({S.BUILDING, S.NO_APP_FILE, S.CONFIG_ERROR, S.DELETING, S.PAUSED, S.STOPPED}),
    S.APP_STARTING: frozenset({S.APP_STARTING, S.RUNNING, S.RUNTIME_ERROR, S.BUILDING, S.DELETING, S.PAUSED,
                               S.STOPPED, S.SLEEPING}),
    S.RUNNING: frozenset({S.RUNNING, S.RUNNING_BUILDING, S.RUNNING_APP_STARTING, S.RUNTIME_ERROR, S.APP_STARTING,
                          S.BUILDING, S.DELETING, S.PAUSED, S.STOPPED, S.SLEEPING, S.NO_APP_FILE,
                          S.CONFIG_ERROR}),
    # While the old revision serves, a failed new build or start leaves the old one RUNNING (its error is the
    # build's, shown with the build), so these fall back to RUNNING.
    # Their app may die meanwhile: a failure then shows as the error itself.
    S.RUNNING_BUILDING: frozenset({S.RUNNING_BUILDING, S.RUNNING_APP_STARTING, S.RUNNING, S.RUNTIME_ERROR,
                                   S.BUILD_ERROR, S.BUILDING, S.APP_STARTING, S.DELETING, S.PAUSED, S.STOPPED,
                                   S.SLEEPING, S.NO_APP_FILE, S.CONFIG_ERROR}),
    S.RUNNING_APP_STARTING: frozenset({S.RUNNING_APP_STARTING, S.RUNNING, S.RUNNING_BUILDING, S.RUNTIME_ERROR,
                                       S.BUILDING, S.APP_STARTING, S.DELETING, S.PAUSED, S.STOPPED,
                                       S.SLEEPING}),
    S.RUNTIME_ERROR: frozenset({S.BUILDING, S.APP_STARTING, S.RUNNING, S.RUNTIME_ERROR, S.DELETING, S.PAUSED,
                                S.STOPPED, S.NO_APP_FILE, S.CONFIG_ERROR}),
    S.DELETING: frozenset({S.DELETING}),
    S.STOPPED: frozenset({S.BUILDING, S.APP_STARTING, S.STOPPED, S.DELETING, S.PAUSED, S.NO_APP_FILE,
                          S.CONFIG_ERROR}),
    S.PAUSED: frozenset({S.BUILDING, S.APP_STARTING, S.PAUSED, S.DELETING, S.STOPPED}),
    S.SLEEPING: frozenset({S.APP_STARTING, S.BUILDING, S.SLEEPING, S.DELETING, S.PAUSED, S.STOPPED,
                           S.RUNNING}),
}

SERVING = frozenset({S.RUNNING, S.RUNNING_BUILDING, S.RUNNING_APP_STARTING})
# Stages that promise work under way: each needs a live job (or a scheduled one), which the reconciler checks.
BUILDING_STAGES = frozenset({S.BUILDING, S.RUNNING_BUILDING})
STARTING = frozenset({S.APP_STARTING, S.RUNNING_APP_STARTING})
ERRORS = frozenset(_ERRORS)
# Stages in which the platform wants an app process to exist.
SHOULD_RUN = SERVING | {S.APP_STARTING}


def check_transition(current: Stage, new: Stage) -> None:
    if new not in TRANSITIONS[current]:
        raise Conflict(f"a space cannot go from {current} to {new}", code="InvalidTransition")


def building_stage(current: Stage) -> Stage:
    """The stage a space shows while a new revision builds: an app that serves keeps serving."""
    return S.RUNNING_BUILDING if current in SERVING else S.BUILDING


def starting_stage(current: Stage) -> Stage:
    return S.RUNNING_APP_STARTING if current in SERVING else S.APP_STARTING
