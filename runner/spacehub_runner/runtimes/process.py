"""The process runtime: each space is a plain subprocess on 127.0.0.1, run with the platform's own rights.

For trusted code on one machine (design §4); open sign-up needs the Docker runtime.

A started app must be found again by any process, after any restart, from its JSON handle alone; so nothing is
kept on `self`, and the handle carries the pid together with the process's start time from /proc: a pid that
has been recycled for another process never matches, and is never signalled.

The app runs under a tiny `/bin/sh` wrapper that is the session and process-group leader:

    /bin/sh -c 'trap : TERM INT HUP; "$@"; echo $? > "$0"' <exit file> <argv...>

It writes the app's exit status to a file, because after a worker restart nobody is the app's parent and only
the parent can learn an exit status. The trap makes the shell outlive a group-wide SIGTERM long enough to
record it (a trapped, not ignored, signal is reset to default in the child). No user data enters the string.

Gradio apps (`process-env` artifacts) are instead forked by their environment's fork-server when
SPACEHUB_FORK_SERVER is on (`forkserver.py`): the forked app leads its own session and group, and the server,
its parent, writes its exit status to the same file as it reaps it; so the handle, and stop, poll, logs, freeze
and thaw, are the same either way. When the fork-server refuses or fails, the app starts as above and its log
says why.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spacehub.errors import StartFailed
from spacehub.settings import Settings
from spacehub_runner.appenv import platform_env
from spacehub_runner.plugs import Artifact, BuildPlan, Handle, RunSpec
from spacehub_runner.runtimes import forkserver, loopback, readiness
from spacehub_runner.runtimes.forkserver import ForkServer
from spacehub_runner.runtimes.logfile import LogFileReader

logger = logging.getLogger("spacehub.process")

_WRAPPER = 'trap : TERM INT HUP; "$@"; echo $? > "$0"'

# Variables of the platform's environment an app may see: machine-wide TLS trust and time zone; no secrets.
# (Python's certifi-based clients only trust a local CA through these.)
_HOST_PASS_THROUGH = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "TZ")

# Exit status recorded when stop() had to SIGKILL the group (the wrapper dies too and cannot write it).
_KILLED_STATUS = 128 + signal.SIGKILL


class ProcessRuntime:
    """Runs `process-env` artifacts as `<venv>/bin/python <app_file>` and `static` ones with http.server."""

    name = "process"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    # -- the Runtime protocol ---------------------------------------------------------------------------

    def start(self, spec: RunSpec, artifact: Artifact) -> Handle:
        app_dir = Path(artifact.ref)
        if not app_dir.is_dir():
            raise StartFailed(f"the app's build output is missing: {app_dir}")
        port = free_port()
        argv = self._command(spec, artifact, port)

        space_dir = space_state_dir(self.settings, spec.space_id)
        home, tmp = space_dir / "home", space_dir / "tmp"
        for folder in (home, tmp / "gradio"):
            folder.mkdir(parents=True, exist_ok=True)
        log_dir = Path(spec.log_dir) if spec.log_dir else self.settings.logs_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        stem = f"space-{spec.space_id}-{spec.revision[:12]}-{time.time_ns()}"
        log_file, exit_file = log_dir / f"{stem}.log", log_dir / f"{stem}.exit"

        env = app_env(spec, artifact, port=port, home=home, tmp=tmp)
        forked = None
        if artifact.kind == "process-env" and self.settings.fork_server:
            forked = self._start_forked(spec, artifact, env, log_file, exit_file)
        if forked is not None:
            pid, start_time = forked
        else:
            # Append mode (O_APPEND, as the fork-server opens it too): the supervisor may empty the file under the
            # running app, whose next write then lands at the new end (runtimes/logfile.py).
            with log_file.open("ab") as out:
                proc = subprocess.Popen(
                    ["/bin/sh", "-c", _WRAPPER, str(exit_file), *argv],
                    cwd=app_dir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    # Its own session: the app outlives the RQ work-horse that started it, and a signal sent to
                    # the worker's process group (Ctrl-C, a supervisor) never reaches it.
                    start_new_session=True,
                    close_fds=True,
                )
            info = proc_info(proc.pid)
            if info is None:  # cannot happen while it is our unreaped child, but never trust a pid blindly
                raise StartFailed("the app's process vanished as it started")
            pid, start_time = proc.pid, info.start_time
        return Handle(
            runtime=self.name,
            target=f"127.0.0.1:{port}",
            data={
                "pid": pid,
                "pgid": pid,  # a session leader leads its own process group
                "start_time": start_time,
                "port": port,
                "log_file": str(log_file),
                "exit_file": str(exit_file),
                "kind": artifact.kind,
                "cwd": str(app_dir),
                "env_path": artifact.env_path,  # which fork-server's environment this app keeps in use
                "forked": forked is not None,
            },
        )

    def stop(self, handle: Handle) -> None:
        """SIGTERM the app's group, SIGKILL it after `stop_grace_s`. Idempotent; safe if the pid is reused."""
        data = handle.data
        if _running(data):
            _signal_group(data, signal.SIGTERM)
            _signal_group(data, signal.SIGCONT)  # a frozen app gets its SIGTERM once it runs again
            if not _wait_gone(data, self.settings.stop_grace_s):
                _signal_group(data, signal.SIGKILL)
                _wait_gone(data, 5.0)
                exit_file = Path(data["exit_file"])
                if not exit_file.exists():
                    exit_file.write_text(f"{_KILLED_STATUS}\n")
        _reap(data)

    def poll(self, handle: Handle) -> int | None:
        return poll_handle(handle)

    def logs(self, handle: Handle) -> Iterator[str]:
        return log_lines(handle)

    def follow_logs(self, handle: Handle) -> Iterator[str]:
        return follow_logs(handle)

    # -- LogFile: the supervisor reads the app's log file incrementally and keeps it under its cap -------------

    def log_path(self, handle: Handle) -> Path:
        return Path(handle.data["log_file"])

    # -- Freezable: SIGSTOP / SIGCONT of the whole process group (the wrapper, the app and its children) ------

    def freeze(self, handle: Handle) -> None:
        _signal_group(handle.data, signal.SIGSTOP)

    def thaw(self, handle: Handle) -> None:
        _signal_group(handle.data, signal.SIGCONT)

    def is_frozen(self, handle: Handle) -> bool:
        return is_frozen(handle)

    def wait_ready(self, handle: Handle, timeout: float | None = None, path: str = "/") -> None:
        wait_ready(handle, self.settings.ready_timeout_s if timeout is None else timeout, path)

    # -- helpers ----------------------------------------------------------------------------------------

    def fork_server(self, artifact: Artifact) -> ForkServer:
        """The fork-server of the artifact's environment (a description: nothing is started here)."""
        venv = Path(artifact.env_path)
        home = forkserver.servers_dir(self.settings) / f"{venv.name}.home"
        neutral = RunSpec(space_id=0, space_key="", revision="", plan=BuildPlan(recipe="gradio"),
                          env=platform_env(self.settings))
        base = app_env(neutral, artifact, port=0, home=home, tmp=home / "tmp")
        return ForkServer(self.settings, venv, forkserver.server_env(self.settings, venv, home, base))

    def _start_forked(self, spec: RunSpec, artifact: Artifact, env: dict[str, str], log_file: Path,
                      exit_file: Path) -> tuple[int, int] | None:
        """(leader pid, its start time) of the app forked by its environment's fork-server, or None after
        noting in the app's log why it starts plainly instead."""
        server = self.fork_server(artifact)
        try:
            server.ensure()
            reply = server.spawn(app_file=spec.plan.app_file, cwd=Path(artifact.ref), env=env, log_file=log_file,
                                 exit_file=exit_file)
        except StartFailed as exc:
            reason = exc.message
        except (OSError, ValueError) as exc:
            reason = f"the fork-server did not answer ({exc})"
        else:
            if reply.get("ok"):
                return int(reply["pid"]), int(reply["start_time"])
            reason = str(reply.get("refused") or reply.get("error") or "no reason given")
        logger.info("space %s starts without the fork-server: %s", spec.space_key, reason)
        with log_file.open("a") as out:
            out.write(f"[spacehub] starting without the fork-server: {reason}\n")
        return None

    def _command(self, spec: RunSpec, artifact: Artifact, port: int) -> list[str]:
        if artifact.kind == "process-env":
            app_file = Path(artifact.ref) / spec.plan.app_file
            if not app_file.resolve().is_relative_to(Path(artifact.ref).resolve()) or not app_file.is_file():
                raise StartFailed(f"app file {spec.plan.app_file!r} not found in the space")
            return [str(Path(artifact.env_path) / "bin" / "python"), spec.plan.app_file]
        if artifact.kind == "static":
            # The platform's own Python; -I so files in the served folder (the cwd) can never be imported.
            return [
                sys.executable,
                "-I",
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                "--directory",
                artifact.ref,
                str(port),
            ]
        raise StartFailed(f"the process runtime cannot run {artifact.kind!r} artifacts")


def space_state_dir(settings: Settings, space_id: int) -> Path:
    """A space's own HOME and temp dirs, kept across revisions; remove it when the space is deleted."""
    return settings.data_dir / "spaces" / str(space_id)


def app_env(spec: RunSpec, artifact: Artifact, *, port: int, home: Path, tmp: Path) -> dict[str, str]:
    """The app's environment, built from scratch, never from the platform's (no SPACEHUB_* or secrets)."""
    venv_bin = [str(Path(artifact.env_path) / "bin")] if artifact.env_path else []
    env = {"LANG": "C.UTF-8"}
    env.update({key: os.environ[key] for key in _HOST_PASS_THROUGH if key in os.environ})
    env.update({str(key): str(value) for key, value in spec.env.items()})
    # Last, so that no space variable can move the app off loopback, off its port or onto the host's tools.
    env.update(
        {
            "PATH": ":".join([*venv_bin, "/usr/bin", "/bin"]),
            "HOME": str(home),
            "TMPDIR": str(tmp),
            "GRADIO_TEMP_DIR": str(tmp / "gradio"),
            "GRADIO_SERVER_NAME": "127.0.0.1",
            "GRADIO_SERVER_PORT": str(port),
            "PORT": str(port),
            "GRADIO_NUM_PORTS": "1",  # a taken port must fail the start, not move the app elsewhere
            "GRADIO_NODE_NUM_PORTS": "1",
            "GRADIO_ANALYTICS_ENABLED": "False",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "PYTHONUNBUFFERED": "1",  # so the log file is live
            "CUDA_VISIBLE_DEVICES": ",".join(spec.gpu_ids),  # empty: no GPU, even on a GPU machine
        }
    )
    if artifact.env_path:
        env["VIRTUAL_ENV"] = artifact.env_path
    return env


def free_port() -> int:
    """A port free on 127.0.0.1 right now (GRADIO_NUM_PORTS=1 turns the rare race into a failed start)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- finding the app again from its handle ----------------------------------------------------------------


@dataclass(frozen=True)
class ProcInfo:
    state: str  # "R", "S", ... "Z" for a zombie
    pgid: int
    start_time: int  # clock ticks after boot: with the pid, unique for the machine's uptime
    ppid: int = 0


def proc_info(pid: int) -> ProcInfo | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parens: split after its closing paren.
    fields = text[text.rindex(")") + 2 :].split()
    return ProcInfo(state=fields[0], pgid=int(fields[2]), start_time=int(fields[19]), ppid=int(fields[1]))


def _is_ours(info: ProcInfo | None, data: dict[str, Any]) -> bool:
    return info is not None and info.start_time == data["start_time"]


def _alive(info: ProcInfo) -> bool:
    return info.state not in ("Z", "X")


def _leader_running(data: dict[str, Any]) -> bool:
    info = proc_info(data["pid"])
    return info is not None and _is_ours(info, data) and _alive(info)


def _orphans(data: dict[str, Any]) -> list[int]:
    """Live members of the app's group whose wrapper shell is gone (e.g. it was killed on its own).

    Linux never hands out a pid that is still some live process's group id, so while members live, the group
    id is still ours; members started before the app cannot be ours.
    """
    pgid, found = data["pgid"], []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        info = proc_info(int(entry.name))
        if info and info.pgid == pgid and _alive(info) and info.start_time >= data["start_time"]:
            if int(entry.name) == pgid and not _is_ours(info, data):
                return []  # the group id now leads someone else's group: nothing of ours is left
            found.append(int(entry.name))
    return found


def _running(data: dict[str, Any]) -> bool:
    return _leader_running(data) or bool(_orphans(data))


def _signal_group(data: dict[str, Any], sig: signal.Signals) -> None:
    if _running(data):  # checked just before, so a recycled group id is never signalled
        with contextlib.suppress(ProcessLookupError):
            os.killpg(data["pgid"], sig)


def _wait_gone(data: dict[str, Any], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _running(data):
        if time.monotonic() >= deadline:
            return False
        _reap(data)  # when we are the parent, a zombie wrapper would otherwise linger
        time.sleep(0.05)
    return True


def _reap(data: dict[str, Any]) -> None:
    """Collect the wrapper if it is our own zombie child (the starter may be the one polling)."""
    if _is_ours(proc_info(data["pid"]), data):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(data["pid"], os.WNOHANG)


def is_frozen(handle: Handle) -> bool:
    """True when the app's process group is stopped (its leader, or what is left of the group, in state T)."""
    data = handle.data
    leader = proc_info(data["pid"])
    if leader is not None and _is_ours(leader, data) and _alive(leader):
        return leader.state in ("T", "t")
    states = [info.state for pid in _orphans(data) if (info := proc_info(pid)) is not None]
    return bool(states) and all(state in ("T", "t") for state in states)


def _await_status(data: dict[str, Any], timeout: float = 2.0) -> None:
    """A forked app that has just exited is a zombie until its fork-server reaps it and writes its status,
    moments later: wait for that (not for a zombie left to init, whose status nobody will write)."""
    exit_file = Path(data["exit_file"])
    deadline = time.monotonic() + timeout
    while not exit_file.exists() and time.monotonic() < deadline:
        info = proc_info(data["pid"])
        if info is None or not _is_ours(info, data) or info.state != "Z" or info.ppid == 1:
            return
        time.sleep(0.01)


def poll_handle(handle: Handle) -> int | None:
    """None while the app runs, else its exit status (-1 when it is gone but left no status).

    An app found listening beyond loopback is stopped here, with the reason in its log (runtimes/loopback.py).
    """
    data = handle.data
    if _running(data):
        exposed = loopback.public_listeners(_orphans(data))
        if not exposed:
            return None
        _stop_exposed(data, exposed)
    _reap(data)
    _await_status(data)
    try:
        return int(Path(data["exit_file"]).read_text().strip())
    except (OSError, ValueError):
        return -1


def _stop_exposed(data: dict[str, Any], exposed: list[str]) -> None:
    """Kill an app that listens beyond loopback (its group at once: it is reachable from the network now)."""
    with open(data["log_file"], "a", encoding="utf-8") as log:
        log.write(f"[spacehub] stopped: the app listens on {', '.join(exposed)}, beyond loopback. The process "
                  "runtime serves apps only through the platform's proxy: bind 127.0.0.1 (GRADIO_SERVER_NAME "
                  "says so; do not pass host=\"0.0.0.0\" or server_name=\"0.0.0.0\")\n")
    logger.warning("app group %s listened on %s: stopped", data["pgid"], ", ".join(exposed))
    _signal_group(data, signal.SIGKILL)
    _wait_gone(data, 5.0)
    exit_file = Path(data["exit_file"])
    if not exit_file.exists():
        exit_file.write_text(f"{_KILLED_STATUS}\n")


def log_lines(handle: Handle) -> Iterator[str]:
    """The app's log lines so far."""
    try:
        with open(handle.data["log_file"], encoding="utf-8", errors="replace") as fh:
            for line in fh:
                yield line.rstrip("\n")
    except FileNotFoundError:
        return


def follow_logs(handle: Handle, interval: float = 0.25) -> Iterator[str]:
    """The app's log lines, then new ones as they are written, until the app has exited.

    Read by offset (`LogFileReader`), so it follows on from the start of the file when the supervisor empties it
    (SPACEHUB_RUN_LOG_MAX_BYTES; lines emptied out before this read them are gone).
    """
    reader = LogFileReader(Path(handle.data["log_file"]))
    while True:
        yield from reader.read()
        if poll_handle(handle) is not None:
            yield from reader.read()  # written between the last read and the exit
            yield from reader.rest()
            return
        time.sleep(interval)


def wait_ready(handle: Handle, timeout: float, path: str = "/") -> None:
    """Wait until GET `path` answers 200-399; StartFailed with the last log lines if it exits or times out."""
    readiness.wait_ready(handle, timeout, path, poll=poll_handle, logs=log_lines)
