"""The plug points of the worker side: builders and runtimes, and the plain data they exchange.

Everything here is JSON-serialisable (dataclasses of str/int/dict/list), because handles and artifacts are
persisted in SQL and passed between processes, never kept on a plug's `self`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class BuildPlan:
    """What to build, derived from the space's README config by a recipe. Never contains raw file content."""

    recipe: str  # "gradio" | "docker" | "static"
    python_version: str = "3.11"
    sdk_version: str | None = None  # gradio version for the gradio recipe
    app_file: str = "app.py"
    app_port: int = 7860
    requirements: tuple[str, ...] = ()  # lines of requirements.txt, already validated
    pre_requirements: tuple[str, ...] = ()
    apt_packages: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BuildPlan:
        data = dict(data)
        for key in ("requirements", "pre_requirements", "apt_packages"):
            data[key] = tuple(data.get(key, ()))
        return cls(**data)


@dataclass(frozen=True)
class Artifact:
    """The result of a build, named by content: same tree + same plan gives the same `key`."""

    kind: str  # "process-env" | "docker-image" | "static"
    key: str  # content hash
    ref: str  # process: path of the app checkout; docker: image tag; static: path
    env_path: str = ""  # process: the virtualenv used to run it
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Artifact:
        return cls(**data)


@dataclass(frozen=True)
class RunSpec:
    """How to run one revision of one space."""

    space_id: int
    space_key: str  # "owner/name"
    revision: str  # commit sha
    plan: BuildPlan
    env: dict[str, str]  # complete app environment (variables, secrets, SPACE_* ...), minus bind/port
    hardware: str = "cpu-basic"
    gpu_ids: tuple[str, ...] = ()
    log_dir: str = ""  # where a runtime may keep log files
    storage: str | None = None  # persistent storage tier ("small" | "medium" | "large"): a volume at /data


@dataclass(frozen=True)
class Handle:
    """A started app, enough to find it again from another process after a restart."""

    runtime: str
    target: str  # "127.0.0.1:PORT" the proxy forwards to
    data: dict[str, Any] = field(default_factory=dict)  # runtime-specific (pid, container id, log file...)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Handle:
        return cls(**data)


LogFn = Callable[[str], None]


@dataclass(frozen=True)
class BuildInputs:
    """What a build is given besides the plan and the tree; every builder takes it, and each uses what applies
    to it (the Hub hands a Docker space's variables and secrets to its build; a gradio space gets them only at
    run time, never in an artifact)."""

    variables: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)
    no_cache: bool = False  # a factory rebuild: build every step again, even when the artifact seems present


NO_INPUTS = BuildInputs()


class Builder(Protocol):
    name: str

    def build(self, plan: BuildPlan, src: Path, log: LogFn, inputs: BuildInputs = NO_INPUTS) -> Artifact: ...


class Runtime(Protocol):
    name: str

    def start(self, spec: RunSpec, artifact: Artifact) -> Handle: ...

    def stop(self, handle: Handle) -> None: ...  # idempotent

    def poll(self, handle: Handle) -> int | None: ...  # None = running, else exit code

    def logs(self, handle: Handle) -> Iterator[str]: ...


@runtime_checkable
class LogFile(Protocol):
    """A runtime whose apps append their output to a file (O_APPEND): the supervisor reads it from where its last
    read stopped and empties it once it is over SPACEHUB_RUN_LOG_MAX_BYTES (`runtimes.logfile`). Optional: the
    other runtimes' `logs` are read whole each time (docker's are capped by the engine)."""

    def log_path(self, handle: Handle) -> Path: ...


@runtime_checkable
class Freezable(Protocol):
    """A runtime that can freeze an idle app in place: no CPU, memory kept, resumed in milliseconds (the first
    tier of sleep). Optional: the lifecycle freezes only apps whose runtime has it."""

    def freeze(self, handle: Handle) -> None: ...  # idempotent

    def thaw(self, handle: Handle) -> None: ...  # idempotent

    def is_frozen(self, handle: Handle) -> bool: ...


@runtime_checkable
class ManagedResources(Protocol):
    """A runtime that can list every app it started for this platform, whoever started it and whatever SQL says
    (docker: containers carry labels), so the supervisor can adopt lost ones and remove orphans. Each handle's
    `data` carries `space_id` (int), `revision` (sha) and `container_id` (unique per app), newest first."""

    def list_managed(self) -> list[Handle]: ...


@runtime_checkable
class Storage(Protocol):
    """A runtime that keeps a space's persistent storage (`RunSpec.storage`, mounted at /data) apart from its
    apps, so it outlives a redeploy and is removed with the space (`remove_volume` is idempotent; it raises
    while an app on its way out still uses it, and the supervisor tries again)."""

    def volume_name(self, space_id: int) -> str: ...

    def list_volumes(self) -> dict[str, int]: ...  # name -> space id, every volume of this platform

    def remove_volume(self, name: str) -> None: ...


@dataclass(frozen=True)
class WiredRuntime:
    """A runtime and the optional abilities it offers, found once when it is wired (None: not offered). Callers
    ask these fields, never the runtime's class."""

    runtime: Runtime
    freezer: Freezable | None = None
    log_file: LogFile | None = None
    managed: ManagedResources | None = None
    storage: Storage | None = None

    @classmethod
    def of(cls, runtime: Runtime) -> WiredRuntime:
        return cls(
            runtime=runtime,
            freezer=runtime if isinstance(runtime, Freezable) else None,
            log_file=runtime if isinstance(runtime, LogFile) else None,
            managed=runtime if isinstance(runtime, ManagedResources) else None,
            storage=runtime if isinstance(runtime, Storage) else None,
        )
