"""Wires the backends: builders and runtimes by name, each runtime with its optional abilities (`plugs.WiredRuntime`,
found once here, when it is made), and the few questions the jobs ask about them.

To add a runtime: add a factory to BUILDERS and RUNTIMES, and a check to ARTIFACT_CHECKS for the kind of
artifact its builder makes; it is done when it passes tests/contract/. Factories import lazily: picking one
runtime never imports the others.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from spacehub import dockerhost
from spacehub.settings import Settings
from spacehub_runner.plugs import Artifact, Builder, BuildPlan, Handle, Runtime, WiredRuntime
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


def _docker_builder(settings: Settings) -> Builder:
    from spacehub_runner.builders.docker import DockerBuilder

    return DockerBuilder(settings)


def _docker_runtime(settings: Settings) -> Runtime:
    from spacehub_runner.runtimes.docker import DockerRuntime

    return DockerRuntime(settings)


def _docker_image_exists(settings: Settings, artifact: Artifact) -> bool:
    from spacehub_runner import imageregistry
    from spacehub_runner.dockerbuild import image_id
    from spacehub_runner.dockeropts import DockerOptions

    if settings.builder == "kubernetes":  # no Docker engine here: the registry says
        from spacehub_runner.builders.kubernetes import registry_has

        return registry_has(settings, artifact.ref)
    if imageregistry.is_digest_ref(artifact.ref):  # pushed: startable wherever the registry is reachable
        import docker

        return imageregistry.exists(docker.from_env(version="auto"), settings, artifact.ref)
    return image_id(DockerOptions.from_settings(settings).cli, artifact.ref) is not None


def _kubernetes_builder(settings: Settings) -> Builder:
    from spacehub_runner.builders.kubernetes import KubernetesBuilder

    return KubernetesBuilder(settings)


def _kubernetes_runtime(settings: Settings) -> Runtime:
    from spacehub_runner.kube.runtime import KubernetesRuntime

    return KubernetesRuntime(settings)


# Keyed by builder name (SPACEHUB_BUILDER).
BUILDERS: dict[str, Callable[[Settings], Builder]] = {
    "process": _process_builder,
    "docker": _docker_builder,
    "kubernetes": _kubernetes_builder,
}

# SPACEHUB_BUILDER=auto: each runtime's own builder. Kubernetes runs what the docker builder pushed to
# SPACEHUB_REGISTRY, by digest, unless SPACEHUB_BUILDER=kubernetes builds on the cluster itself.
DEFAULT_BUILDERS: dict[str, str] = {"process": "process", "docker": "docker", "kubernetes": "docker"}

RUNTIMES: dict[str, Callable[[Settings], Runtime]] = {
    "process": _process_runtime,
    "docker": _docker_runtime,
    "kubernetes": _kubernetes_runtime,
}

# Keyed by Artifact.kind: is this build output still there to start? (If not, the job rebuilds.)
ARTIFACT_CHECKS: dict[str, Callable[[Settings, Artifact], bool]] = {
    "process-env": _process_env_exists,
    "static": _static_exists,
    "docker-image": _docker_image_exists,
}

# The path the readiness probe asks for, per recipe. Any HTTP answer means ready (readiness.answered): the path
# only refines what is asked. Gradio's /theme.css is cheap and runs none of the app's code (`/` runs an
# `auth_dependency`); an app that mounts Gradio under a sub-path answers it 404, which is ready all the same.
READY_PATHS: dict[str, str] = {"gradio": "/theme.css"}


def builder_for(settings: Settings, runtime_name: str) -> Builder:
    """SPACEHUB_BUILDER, or (auto) the builder whose artifacts the runtime `runtime_name` runs."""
    name = settings.builder if settings.builder != "auto" else _pick(DEFAULT_BUILDERS, runtime_name, "runtime")
    return _pick(BUILDERS, name, "builder")(settings)


# The last runtime made per name, with the settings it was made for: a runtime keeps no state about apps
# (handles are data), but the docker one holds an engine connection worth reusing across supervisor ticks.
_RUNTIMES: dict[str, tuple[Settings, WiredRuntime]] = {}


def wired(settings: Settings, name: str) -> WiredRuntime:
    """The runtime `name` and its optional abilities (freeze, log file, managed resources, storage)."""
    cached = _RUNTIMES.get(name)
    if cached is not None and cached[0] is settings:
        return cached[1]
    plugged = WiredRuntime.of(_pick(RUNTIMES, name, "runtime")(settings))
    _RUNTIMES[name] = (settings, plugged)
    return plugged


def runtime_for(settings: Settings, name: str) -> Runtime:
    return wired(settings, name).runtime


def runtime_name(settings: Settings) -> str:
    """The runtime new builds target: settings.runtime, with "auto" = docker when a Docker engine answers a
    ping (within SPACEHUB_DOCKER_PING_TIMEOUT_S), else process."""
    if settings.runtime != "auto":
        return settings.runtime
    return "docker" if "docker" in RUNTIMES and dockerhost.uses_docker(settings) else "process"


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
