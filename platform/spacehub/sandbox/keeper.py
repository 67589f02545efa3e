"""Keeping the egress rules in force while the platform runs: they live in the kernel, and a reboot, a firewall
flush or a stray command takes them away while dockerd, its networks and the platform's settings stay.

The supervisor calls `EgressKeeper.tend` on every pass; at most every `SPACEHUB_DOCKER_SANDBOX_CHECK_S` it looks
at the rules of the bridges this platform polices and puts back what is gone or damaged (`egress.reassert`), so
containers are boxed again within one interval without anyone running `spacehub sandbox install`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from spacehub import dockerhost
from spacehub.settings import Settings

from . import egress

log = logging.getLogger("spacehub.sandbox")


def reassert(settings: Settings, *, builds: bool = True) -> list[str]:
    """Put back what is missing (EgressError when it cannot: no root or CAP_NET_ADMIN); log what was repaired."""
    repaired = egress.reassert(settings, log.info, builds=builds)
    if repaired:
        log.warning("egress rules were missing or altered and are back in force: %s", "; ".join(repaired))
    return repaired


class EgressKeeper:
    def __init__(self, settings: Settings, *, builds: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings, self.builds, self._clock = settings, builds, clock
        self._due = 0.0
        self._uses_docker: bool | None = None

    def tend(self) -> list[str]:
        """Check (and repair) when the interval is up; what was repaired. Never raises: a failure is logged and
        tried again at the next interval."""
        if not self.settings.docker_sandbox_reassert or self._clock() < self._due:
            return []
        self._due = self._clock() + self.settings.docker_sandbox_check_s
        if self._uses_docker is None:
            self._uses_docker = dockerhost.uses_docker(self.settings)
        if not self._uses_docker:
            return []
        try:
            return reassert(self.settings, builds=self.builds)
        except Exception:  # noqa: BLE001 - the engine or iptables failed: say so, try again next time
            log.exception("could not check or put back the egress rules; containers may not be boxed in")
            return []
