"""Builders and runtimes by name, and the few questions the jobs ask about them.

To add a runtime (e.g. "docker"): add a factory to BUILDERS and RUNTIMES, and a check to ARTIFACT_CHECKS for
the kind of artifact its builder makes. Factories import lazily: picking one runtime never imports the others.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from spacehub.settings import Settings
from spacehub_runner.plugs import Artifact, Builder, BuildPlan, Handle, Runtime
from spacehub_runner.runtimes import readiness


def _process_builder(settings: Settings) -> Builder:
    from spacehub_runner.builders.process import ProcessBuilder

    return ProcessBuilder(settings)


def _process_runtime(settings: Settings) -> Runtime:
    from spacehub_runner.runtimes.process import ProcessRuntime

    return ProcessRuntime(settings)


def _process_env_exists(settings: Settings, artifact: Artifact) -> bool:
    from spacehub_runner.builders.process import ENV_MARKER

    return Path(artifact.ref).is_dir() and (Path(artifact.env_path) / ENV_MARKER).is_file()


def _static_exists(settings: Settings, artifact: Artifact) -> bool:
    return Path(artifact.ref).is_dir()


# Keyed by runtime name: each runtime has the builder that makes its artifacts.
BUILDERS: dict[str, Callable[[Settings], Builder]] = {
    "process": _process_builder,
}

RUNTIMES: dict[str, Callable[[Settings], Runtime]] = {
    "process": _process_runtime,
}

# Keyed by Artifact.kind: is this build output still there to start? (If not, the job rebuilds.)
ARTIFACT_CHECKS: dict[str, Callable[[Settings, Artifact], bool]] = {
    "process-env": _process_env_exists,
    "static": _static_exists,
}

# The readiness probe per recipe. Gradio's /theme.css is always 200, even with `auth=` or `auth_dependency=`
# (where `/` is 401), and cheap (reference/gradio-behind-a-proxy.md §4).
READY_PATHS: dict[str, str] = {"gradio": "/theme.css"}


def builder_for(settings: Settings, runtime_name: str) -> Builder:
    """The builder whose artifacts the runtime `runtime_name` runs."""
    return _pick(BUILDERS, runtime_name, "builder")(settings)


def runtime_for(settings: Settings, name: str) -> Runtime:
    return _pick(RUNTIMES, name, "runtime")(settings)


def runtime_name(settings: Settings) -> str:
    """The runtime new builds target: settings.runtime, with "auto" = docker when it is registered and a
    Docker engine looks reachable, else process."""
    if settings.runtime != "auto":
        return settings.runtime
    docker_reachable = bool(os.environ.get("DOCKER_HOST")) or Path("/var/run/docker.sock").exists()
    return "docker" if "docker" in RUNTIMES and docker_reachable else "process"


def artifact_exists(settings: Settings, artifact: Artifact) -> bool:
    check = ARTIFACT_CHECKS.get(artifact.kind)
    return check is not None and check(settings, artifact)


def wait_ready(runtime: Runtime, handle: Handle, timeout: float, plan: BuildPlan) -> None:
    """Wait until the started app answers its recipe's probe; StartFailed (with its last log lines) if not."""
    path = READY_PATHS.get(plan.recipe, "/")
    readiness.wait_ready(handle, timeout, path, poll=runtime.poll, logs=runtime.logs)


T = TypeVar("T")


def _pick(table: dict[str, T], name: str, what: str) -> T:
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"unknown {what} {name!r}; known: {', '.join(sorted(table))}") from None
