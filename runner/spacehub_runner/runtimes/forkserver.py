"""Fork-servers for the process runtime: fast starts by forking a process that has imported gradio already.

`import gradio` costs ~4 s of one core (more with torch and transformers); forking a process that has done it
costs tens of milliseconds. So each environment (virtualenv) gets one long-lived fork-server
(`forkserver_main.py`, which explains how a child is made to look freshly started), and the process runtime asks
it for a child per space start; when it cannot help (it refuses, or is not there in time) the runtime starts
the app plainly.

Who owns a fork-server: nobody's child. It runs in its own session (it outlives the RQ job that started it),
its environment is the app-safe one all spaces of that environment share (`server_env`: no SPACEHUB_*, no
secret, no space's variable), and it is found again by anyone, after any restart, through its socket:

    <data_dir>/run/forkservers/<env hash>.sock    answers only once the server has imported its modules
    <data_dir>/run/forkservers/<env hash>.lock    flock'ed while a server for that env is starting
    <data_dir>/run/forkservers/<env hash>.log     what the server itself says (preload, refusals)
    <data_dir>/run/forkservers/<env hash>.home/   its HOME and TMPDIR (each app gets its own)

A server whose socket does not answer is started again (`ForkServer.ensure`, on the next start; `tend` for
environments that sleeping spaces will wake into); one whose fingerprint (program, interpreter, environment,
preload list) is not the current one is replaced; and one whose environment no space uses any more is stopped
by `tend` (run by the supervisor) after SPACEHUB_FORK_SERVER_IDLE_S. Stopping a server never touches its
children (each app leads its own session): a server asked to go retires, and ends once its apps have.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spacehub.errors import StartFailed
from spacehub.settings import Settings
from spacehub_runner.runtimes.forkserver_main import ENV_ROOM_VARIABLE

log = logging.getLogger("spacehub.forkserver")

PROGRAM = Path(__file__).with_name("forkserver_main.py")
# run_path keeps the program's own folder (spacehub's source) off sys.path, which `python <file>` would add.
_BOOTSTRAP = "import runpy, sys; runpy.run_path(sys.argv.pop(1), run_name='spacehub_forkserver')"

# Servers this process started: polled so that they never linger as zombies of a long-lived parent.
_SPAWNED: list[subprocess.Popen[bytes]] = []


# Room reserved in the server's initial environment for a child's (larger ones stay invisible in /proc only).
ENV_ROOM_BYTES = 32 * 1024


def servers_dir(settings: Settings) -> Path:
    return settings.run_dir / "forkservers"


@dataclass(frozen=True)
class ForkServer:
    """The fork-server of one environment: a name for its files plus how to talk to it. Holds no process."""

    settings: Settings
    venv: Path
    env: dict[str, str]  # the server's own environment (`server_env`)

    @property
    def env_hash(self) -> str:
        return self.venv.name  # environments are content-named folders: envs/<env hash>

    @property
    def socket_path(self) -> Path:
        return servers_dir(self.settings) / f"{self.env_hash}.sock"

    @property
    def lock_path(self) -> Path:
        return servers_dir(self.settings) / f"{self.env_hash}.lock"

    @property
    def log_path(self) -> Path:
        return servers_dir(self.settings) / f"{self.env_hash}.log"

    @property
    def home(self) -> Path:
        return servers_dir(self.settings) / f"{self.env_hash}.home"

    def fingerprint(self) -> str:
        blob = json.dumps({
            "program": hashlib.sha256(PROGRAM.read_bytes()).hexdigest(),
            "python": str(self.venv / "bin" / "python"),
            "env": self.env,
            "preload": list(self.settings.fork_server_preload),
        }, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    # -- talking to it ------------------------------------------------------------------------------------

    def request(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        """One request, one reply. OSError/ValueError when nothing (sane) answers."""
        return request(self.socket_path, message, timeout)

    def hello(self, timeout: float = 5.0) -> dict[str, Any] | None:
        try:
            reply = self.request({"op": "hello"}, timeout)
        except (OSError, ValueError):
            return None
        return reply if reply.get("ok") else None

    def current(self, info: dict[str, Any] | None) -> bool:
        return info is not None and info.get("fingerprint") == self.fingerprint()

    def ensure(self) -> dict[str, Any]:
        """The server's hello once it answers with the current fingerprint; starts (or replaces) it if needed.

        StartFailed when it does not come up within SPACEHUB_FORK_SERVER_START_TIMEOUT_S.
        """
        info = self.hello()
        if self.current(info):
            assert info is not None
            return info
        deadline = time.monotonic() + self.settings.fork_server_start_timeout_s
        proc = None
        while time.monotonic() < deadline:
            if proc is None:
                # None while another process starts one (asked again each round, in case that one dies).
                proc = self.launch()
            info = self.hello()
            if self.current(info):
                assert info is not None
                return info
            if proc is not None and proc.poll() is not None:
                raise StartFailed(f"the fork-server exited with {proc.returncode}:\n{self.log_tail()}")
            time.sleep(0.05)
        if proc is not None:
            _kill(proc)
        raise StartFailed(f"the fork-server did not answer within {self.settings.fork_server_start_timeout_s}s")

    def launch(self) -> subprocess.Popen[bytes] | None:
        """Start a server unless one is starting (its lock is held) or the current one answers.

        The new server inherits the locked file and closes it once its socket listens, so the lock is held
        exactly while it imports, even after the process that started it has gone.
        """
        folder = servers_dir(self.settings)
        folder.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(exist_ok=True)
        with open(self.lock_path, "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None
            info = self.hello()
            if self.current(info):
                return None
            if info is not None:
                log.info("replacing the fork-server of environment %s (pid %s): its configuration changed",
                         self.env_hash[:12], info.get("pid"))
                self.shutdown()
            with self.log_path.open("ab") as out:
                proc = subprocess.Popen(
                    [str(self.venv / "bin" / "python"), "-c", _BOOTSTRAP, str(PROGRAM), str(self.socket_path),
                     self.fingerprint(), ",".join(self.settings.fork_server_preload), str(lock.fileno())],
                    cwd=self.home,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # outlives the job that started it; no signal to our group reaches it
                    pass_fds=(lock.fileno(),),
                )
        _SPAWNED.append(proc)
        log.info("starting the fork-server of environment %s (pid %s)", self.env_hash[:12], proc.pid)
        return proc

    def spawn(self, *, app_file: str, cwd: Path, env: dict[str, str], log_file: Path,
              exit_file: Path) -> dict[str, Any]:
        """Ask for a child; its reply: {"ok": true, "pid"} or {"ok": false, "refused"/"error"}."""
        message = {"op": "spawn", "app_file": app_file, "cwd": str(cwd), "env": env, "log_file": str(log_file),
                   "exit_file": str(exit_file)}
        return self.request(message, timeout=60.0)

    def shutdown(self) -> bool:
        """Ask the server to retire: no more starts; it ends once its running apps have (it records their exit
        statuses). True if one answered."""
        try:
            return bool(self.request({"op": "exit"}, timeout=5.0).get("ok"))
        except (OSError, ValueError):
            return False

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def server_env(settings: Settings, venv: Path, home: Path, base: dict[str, str]) -> dict[str, str]:
    """The fork-server's environment: what every app of this environment gets alike, nothing of the platform's.

    `base` is the process runtime's app environment built for no space in particular (no port, no variable).
    HOME and TMPDIR are the server's own; each child gets its space's.
    """
    env = {key: value for key, value in base.items() if key not in ("GRADIO_SERVER_PORT", "PORT")}
    tmp = home / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env.update({"HOME": str(home), "TMPDIR": str(tmp), "GRADIO_TEMP_DIR": str(tmp / "gradio")})
    env[ENV_ROOM_VARIABLE] = "." * ENV_ROOM_BYTES  # room for a child's environment (`_show_as` there)
    return env


def request(path: Path, message: dict[str, Any], timeout: float) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        with _short_path(path) as address:
            sock.connect(address)
        sock.sendall(json.dumps(message).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    reply = json.loads(data)
    if not isinstance(reply, dict):
        raise ValueError("the fork-server's reply is not a JSON object")
    return reply


@contextlib.contextmanager
def _short_path(path: Path) -> Iterator[str]:
    """A unix socket address holds 108 bytes: a longer path is reached through /proc/self/fd/<dir fd>/."""
    if len(str(path).encode()) < 100:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def reap_spawned() -> None:
    """Collect servers this process started that have exited since."""
    _SPAWNED[:] = [proc for proc in _SPAWNED if proc.poll() is None]


# -- all servers of this data dir ----------------------------------------------------------------------------


def running(settings: Settings) -> dict[str, dict[str, Any]]:
    """env hash -> hello of every fork-server of this data dir that answers."""
    found: dict[str, dict[str, Any]] = {}
    folder = servers_dir(settings)
    if not folder.is_dir():
        return found
    for sock in sorted(folder.glob("*.sock")):
        try:
            info = request(sock, {"op": "hello"}, timeout=5.0)
        except (OSError, ValueError):
            continue
        if info.get("ok"):
            found[sock.stem] = info
    return found


def stop_unused(settings: Settings, in_use: set[str]) -> list[str]:
    """Stop servers of environments outside `in_use` that have no live child and started nothing for
    SPACEHUB_FORK_SERVER_IDLE_S; returns their env hashes."""
    stopped = []
    now = time.time()
    for env_hash, info in running(settings).items():
        if env_hash in in_use or info.get("children"):
            continue
        if now - max(float(info.get("started", 0)), float(info.get("last_spawn", 0))) < settings.fork_server_idle_s:
            continue
        with contextlib.suppress(OSError, ValueError):
            request(servers_dir(settings) / f"{env_hash}.sock", {"op": "exit"}, timeout=5.0)
            log.info("stopped the fork-server of environment %s: no space uses it", env_hash[:12])
            stopped.append(env_hash)
    return stopped
