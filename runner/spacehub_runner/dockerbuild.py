"""Run one BuildKit build through the docker CLI, streaming its log line by line, with a timeout.

Why the CLI and not docker-py: docker-py's `images.build` speaks the legacy builder only, and the layered
images need BuildKit (`RUN --mount=type=cache`, `--mount=type=secret`). Debian's 20.10 client does BuildKit
without the buildx plugin when `DOCKER_BUILDKIT=1`.

Secrets never reach argv, a layer or the log: each is handed to the CLI in its environment
(`--secret id=NAME,env=VAR`), and every line of the log has the secret values (and their base64 forms) masked.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from spacehub import dockerhost
from spacehub.errors import BuildFailed

from .parentdeath import signal_on_parent_death
from .plugs import LogFn

SECRET_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_MASK = "*****"


@dataclass
class BuildRequest:
    context: Path
    dockerfile: Path
    tag: str
    build_args: Mapping[str, str] = field(default_factory=dict)  # public values only
    secrets: Mapping[str, str] = field(default_factory=dict)  # id -> value
    secret_files: Mapping[str, Path] = field(default_factory=dict)  # id -> file (platform-made, e.g. sources)
    labels: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 1800.0
    no_cache: bool = False  # a "factory rebuild": BuildKit reuses no layer (secret values are not cache keys)
    add_hosts: Mapping[str, str] = field(default_factory=dict)  # name -> address (or "host-gateway")
    disk: DiskCap | None = None  # stop the build once it has taken this much of Docker's disk


@dataclass(frozen=True)
class DiskCap:
    """A build's disk cap. BuildKit's steps write into dockerd's own storage, which no per-build quota covers
    (overlay2 on ext4), so the free space of the filesystem holding Docker's data is watched while the build runs,
    and the build is stopped (its session cancelled, its partial layers dropped) once that filesystem has lost
    more than `limit_bytes` since the build began. It is a watch, not ENOSPC: a step may overshoot by what it
    writes in one `check_s`; and writes of others on the same disk at the same time count too."""

    path: str  # dockerd's data root
    limit_bytes: int
    check_s: float = 1.0


def _masker(secrets: Sequence[str]) -> re.Pattern[str] | None:
    forms: set[str] = set()
    for value in secrets:
        if len(value) < 4:  # masking "a" would shred the whole log; such values are not secrets anyway
            continue
        forms.add(value)
        forms.add(base64.b64encode(value.encode()).decode().rstrip("="))
    if not forms:
        return None
    return re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)))


def build_command(cli: str, req: BuildRequest) -> tuple[list[str], dict[str, str]]:
    """argv and environment of the CLI call. Split out so tests can check what would be run."""
    argv = [cli, "build", "--progress=plain", "-f", str(req.dockerfile), "-t", req.tag]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPACEHUB_BUILD_SECRET_")}
    env["DOCKER_BUILDKIT"] = "1"
    if req.no_cache:
        argv.append("--no-cache")
    for name, value in req.build_args.items():
        argv += ["--build-arg", f"{name}={value}"]
    for label, value in req.labels.items():
        argv += ["--label", f"{label}={value}"]
    for name, address in req.add_hosts.items():
        argv += ["--add-host", f"{name}:{address}"]
    for i, (sid, value) in enumerate(sorted(req.secrets.items())):
        if not SECRET_ID.match(sid):
            raise BuildFailed(f"invalid secret name {sid!r}")
        var = f"SPACEHUB_BUILD_SECRET_{i}"
        env[var] = value
        argv += ["--secret", f"id={sid},env={var}"]
    for sid, path in sorted(req.secret_files.items()):
        argv += ["--secret", f"id={sid},src={path}"]
    argv.append(str(req.context))
    return argv, env


def run_build(cli: str, req: BuildRequest, log: LogFn) -> None:
    """Build `req.tag`; raise BuildFailed on a non-zero exit or when `req.timeout_s` passes."""
    argv, env = build_command(cli, req)
    mask = _masker(list(req.secrets.values()))
    proc = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # so a timeout can kill the CLI and anything it started
        # A build job killed under it (kill -9 of the work-horse, its worker or serve) takes its client along:
        # SIGTERM, on which the client cancels its build session and dockerd stops the solve (no step runs on).
        preexec_fn=_cancel_with_parent,
    )
    timed_out = threading.Event()

    def on_timeout() -> None:
        timed_out.set()
        _kill_group(proc)

    timer = threading.Timer(req.timeout_s, on_timeout)
    timer.daemon = True
    timer.start()
    finished, over_disk = threading.Event(), threading.Event()
    if req.disk is not None:
        threading.Thread(target=_watch_disk, args=(req.disk, proc, finished, over_disk), daemon=True).start()
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            log(mask.sub(_MASK, line) if mask else line)
        rc = proc.wait()
    finally:
        timer.cancel()
        finished.set()
        if proc.poll() is None:
            _kill_group(proc)
    if over_disk.is_set():
        assert req.disk is not None
        raise BuildFailed(f"build stopped: it took more than {req.disk.limit_bytes / 1024**3:.2f} GB of disk "
                          "(SPACEHUB_DOCKER_BUILD_DISK_GB)")
    if timed_out.is_set():
        raise BuildFailed(f"build timed out after {req.timeout_s:.0f}s")
    if rc != 0:
        raise BuildFailed(f"docker build failed (exit {rc})")


_cancel_with_parent = signal_on_parent_death(signal.SIGTERM)


def _free_bytes(path: str) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def _watch_disk(cap: DiskCap, proc: subprocess.Popen[bytes], finished: threading.Event,
                over: threading.Event) -> None:
    start = _free_bytes(cap.path)
    while not finished.wait(cap.check_s):
        if start - _free_bytes(cap.path) > cap.limit_bytes:
            over.set()
            _kill_group(proc)
            return


def docker_root(cli: str) -> str:
    """dockerd's data root (where BuildKit's layers are written)."""
    result = subprocess.run([cli, "info", "--format", "{{.DockerRootDir}}"], capture_output=True, text=True)
    root = result.stdout.strip()
    if result.returncode != 0 or not root.startswith("/"):
        raise BuildFailed(f"cannot ask dockerd for its data root: {result.stderr.strip()}")
    return root


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    # SIGTERM first: the CLI then cancels the build session, which stops the solve inside dockerd.
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return
            time.sleep(0.1)


def image_id(cli: str, ref: str) -> str | None:
    """The image's ID, or None when there is no such image (the cheap check before any build)."""
    result = subprocess.run([cli, "image", "inspect", "--format", "{{.Id}}", ref], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


def image_label(cli: str, ref: str, label: str) -> str | None:
    result = subprocess.run(
        [cli, "image", "inspect", "--format", f'{{{{index .Config.Labels "{label}"}}}}', ref],
        capture_output=True,
        text=True,
    )
    value = result.stdout.strip()
    return value if result.returncode == 0 and value and value != "<no value>" else None


def bridge_gateway(cli: str, network: str = "bridge") -> str:
    """The host's address on the docker bridge: where builds can reach a server the worker starts."""
    address = dockerhost.bridge_gateway(cli, network)
    if address is None:
        raise BuildFailed(f"cannot find the gateway address of docker network {network!r}")
    return address
