"""The plug points of the worker side: builders and runtimes, and the plain data they exchange.

Everything here is JSON-serialisable (dataclasses of str/int/dict/list), because handles and artifacts are
persisted in SQL and passed between processes, never kept on a plug's `self`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
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


class Builder(Protocol):
    def build(self, plan: BuildPlan, src: Path, log: LogFn) -> Artifact: ...


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
