"""A child process that goes when the process that started it dies (Linux's PR_SET_PDEATHSIG).

A build's helpers (uv, the docker client) run in sessions of their own, so that a timeout can stop each with its
children; but then a kill -9 of the build job, of its worker or of `serve` would leave them running on, writing
into an environment the retried build makes again, or keeping a `docker build` going inside dockerd that nobody
waits for. Given as `preexec_fn`: the setting survives the exec. Elsewhere than Linux, nothing."""

from __future__ import annotations

import ctypes
import signal
from collections.abc import Callable
from contextlib import suppress

_PR_SET_PDEATHSIG = 1


def signal_on_parent_death(sig: signal.Signals) -> Callable[[], None]:
    """A `preexec_fn`: the child is sent `sig` when the thread that started it ends (the build's, which waits for
    it, so in practice when its process dies)."""

    def arm() -> None:
        with suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)

    return arm
