"""The box around strangers' code on the Docker runtime, as the host's kernel enforces it.

Two parts, both installed by `spacehub sandbox install` (root; deploy/setup/docker.sh runs it) and both checked
before `spacehub serve` runs the Docker runtime (`problems`):

  - `egress`: spacehub's own bridge network for app containers, and iptables rules on it and on the engine's
    default bridge (where BuildKit runs every build step): the platform's public port, DNS, and (if allowed) the
    public internet on 80/443; nothing else of the host, no private, loopback or link-local address, no other
    container.
  - `buildsteps`: every BuildKit build step runs with `no-new-privileges` and a minimal capability set.
"""

from __future__ import annotations

from collections.abc import Callable

from spacehub.settings import Settings

from . import buildsteps, egress


def problems(settings: Settings) -> list[str]:
    """What is missing or out of date; empty when the box is whole."""
    return egress.problems(settings) + buildsteps.problems(settings)


def install(settings: Settings, log: Callable[[str], None]) -> None:
    egress.install(settings, log)
    buildsteps.install(settings, log)


def remove(settings: Settings, log: Callable[[str], None]) -> None:
    egress.remove(settings, log)
    buildsteps.remove(settings, log)


def refusal(found: list[str]) -> str:
    """The start-up message when the box is not whole."""
    lines = "\n".join(f"  - {p}" for p in found)
    return (
        "refusing to run the Docker runtime: spacehub's sandbox (egress rules, build-step hardening) is missing "
        f"or out of date:\n{lines}\nRun `spacehub sandbox install` as root (deploy/setup/docker.sh does), with "
        "the same SPACEHUB_* settings as this server."
    )
