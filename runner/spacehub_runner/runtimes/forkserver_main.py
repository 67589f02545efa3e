"""The fork-server program: one long-lived process per environment, forking one child per space start.

Started by `spacehub_runner.runtimes.forkserver` with the environment's own interpreter, as

    <venv>/bin/python -c "import runpy, sys; runpy.run_path(sys.argv[1], run_name='spacehub_forkserver')"
        <this file> <socket path> <fingerprint> <preload modules, comma-separated> <lock fd>

so it may use the standard library only, and its own folder (spacehub's source) is never put on `sys.path`.
Its environment is the app-safe one every space of this environment shares (no platform variable, no secret).

**Preload.** It imports the modules of the preload list that the environment has (gradio, torch, transformers
...), recording which environment variables module-level code reads while they import (see `EnvReads`), runs a
full collection and `gc.freeze()`s what is left (so no later collection in a child writes to the shared pages),
and only then binds its socket: a socket that answers belongs to a server that is ready to fork. Until then it
holds the environment's start lock (an flock'ed file its starter passed down as <lock fd>), so that no second
server is started meanwhile. It never starts
a thread: a `threading` thread in a forking process would leave locks held forever in the child, so forks are
refused if one exists. (Native thread pools that re-create themselves after a fork, as OpenBLAS's do through
`pthread_atfork`, are fine.)

**Protocol.** One JSON line in, one JSON line out, per connection on the unix socket:

    {"op": "hello"}  -> {"ok": true, "pid", "fingerprint", "children", "preloaded", "failed", "threads", ...}
    {"op": "spawn", "app_file", "cwd", "env", "log_file", "exit_file"}
                     -> {"ok": true, "pid": <leader pid>, "start_time", "app_pid"}
                        or {"ok": false, "refused" or "error": <reason>}
    {"op": "exit"}   -> {"ok": true}; the server exits (children live on: they are in their own sessions)

**A start** forks twice, so the tree matches the plain path (`/bin/sh` wrapper + app) exactly:

    server --fork--> leader: setsid(); records the app's exit status in `exit_file` (128+N if killed by signal
                     N, as the shell does); ignores TERM/INT/HUP the way the wrapper's `trap :` does, so that a
                     group-wide SIGTERM still gets its status written
             leader --fork--> app: fds 0 = /dev/null, 1 and 2 = the log file; cwd = the app folder; the
                     environment replaced by exactly the space's; then `runpy.run_path(app_file, "__main__")`

The server answers only once the leader has its own session and the app exists, so the pid it returns leads a
process group that already holds the app: stop and freeze (signals to the group) work from the first moment.

**Environment read at import.** A module that copies an environment variable into a global at import keeps the
server's value in every child. After replacing `os.environ`, the app child therefore re-runs, for every variable
whose value differs from the server's, the module-level statements that read it while the preload imported
(e.g. gradio's `INITIAL_PORT_VALUE = int(os.getenv("GRADIO_SERVER_PORT", "7860"))`, huggingface_hub's
`ENDPOINT = os.getenv("HF_ENDPOINT", ...)`), then, in the same module, later module-level assignments that use a
name so re-bound (`HUGGINGFACE_CO_URL_TEMPLATE = ENDPOINT + ...`), then recorded statements of other modules
that use such a name (`os.path.join(constants.HF_HOME, "modules")`), and finally rebinds same-named copies made
by `from module import NAME` elsewhere. Only assignments (also inside module-level `if`/`try`) are re-run, never
calls or definitions. A start is refused (and the runtime starts the app plainly) when a differing variable
   - was read by a module-level statement that is not such an assignment (a class body, a call, a `def`'s
     default), or by a module whose source cannot be read;
   - is read natively at interpreter or library start-up (`NATIVE_PREFIXES`: PYTHON*, LD_*, LC_*/LANG, OMP_*,
     MKL_*, OPENBLAS_*, CUDA_*, TORCH_*, proxy variables ...), which no re-run can reach;
   - is CUDA_VISIBLE_DEVICES while the preload has initialised CUDA (it must be set before CUDA starts).
Reads by code that walks the whole environment (`dict(os.environ)`, proxy discovery) are not taken as reads of
every variable: a reading site that touched `SCAN_MIN_KEYS` or more variables is a scan and is ignored; the
prefixes scans look for (FSSPEC_*, TQDM_*, *_proxy) are in `NATIVE_PREFIXES` instead. Nor are reads by
sysconfig and site, which derive the per-user site-packages folder from HOME; a virtualenv never uses it.
Besides: `time.tzset()` re-reads TZ, `tempfile.tempdir` is reset (it caches TMPDIR), Python's `random` reseeds
itself after a fork and numpy's global generator is reseeded. Not reproduced: str hash randomisation (every
child of one server shares its hash seed) and values other modules derived at import from re-bound names by
anything but the statements above.
"""

from __future__ import annotations

import ast
import contextlib
import ctypes
import gc
import importlib
import importlib.util
import json
import os
import runpy
import select
import signal
import socket
import sys
import tempfile
import time
import types
from dataclasses import dataclass, field
from typing import Any

PROTOCOL = 1

# A variable of the server's own environment that only reserves room: a child writes its environment over the
# server's initial one in place, so that /proc/<pid>/environ (ps e, tools, tests) shows the app's (see `_show_as`).
ENV_ROOM_VARIABLE = "FORK_SERVER_ENV_ROOM"

# A reading site (code + line) that read this many distinct variables (or all there are) walked the whole
# environment.
SCAN_MIN_KEYS = 8

# Variables read natively (interpreter start-up, C libraries' load) or by environment scans: a child whose value
# differs from the server's cannot be fixed after the fork, so such a start is refused.
NATIVE_PREFIXES = (
    "PYTHON", "LD_", "LC_", "LANG", "OMP_", "GOMP_", "KMP_", "MKL_", "OPENBLAS_", "GOTO", "BLIS_", "NUMEXPR_",
    "MALLOC_", "CUDA_", "NVIDIA_", "NCCL_", "PYTORCH_", "TORCH", "XLA_", "TF_", "FSSPEC_", "TQDM_",
)
# CUDA_VISIBLE_DEVICES is read when CUDA starts, which the server never does: allowed unless it has.
CUDA_DEVICES = "CUDA_VISIBLE_DEVICES"

# Frames skipped when finding who read a variable: os.getenv, Mapping.get, expanduser... (3.11 runs these
# modules frozen, so their file names are "<frozen os>" and the like).
_PLUMBING = frozenset(
    name for module in ("os", "_collections_abc", "posixpath", "genericpath")
    for name in (f"<frozen {module}>", getattr(sys.modules.get(module), "__file__", None) or "")
    if name
)
# Reads by these modules are not recorded: sysconfig and site derive the per-user site-packages folder from HOME
# (and PYTHONUSERBASE), which a virtualenv never puts on sys.path. (zoneinfo's import, for one, makes sysconfig
# compute it; its own value does not depend on HOME.)
_IGNORED_READERS = frozenset({"sysconfig", "site"})


def _native(key: str) -> bool:
    return key != CUDA_DEVICES and (key.upper().startswith(NATIVE_PREFIXES) or key.lower().endswith("_proxy"))


# -- which module-level statements read which variables ------------------------------------------------------


@dataclass
class Statement:
    """A top-level statement of a preloaded module, compiled to be re-run in the module's namespace."""

    module: str
    index: int
    code: types.CodeType | None  # None: not safe to re-run
    loads: frozenset[str]  # names and attribute names it reads
    binds: frozenset[str]  # module globals it assigns


@dataclass
class ModuleBody:
    name: str
    statements: list[Statement]
    spans: list[tuple[int, int]]  # each statement's first and last line, to place a read


def _rerunnable(node: ast.stmt) -> bool:
    """Assignments only (also inside if/try), so re-running has no effect but the new values."""
    if isinstance(node, ast.Assign | ast.AnnAssign):
        return not isinstance(node, ast.AnnAssign) or node.value is not None
    if isinstance(node, ast.Pass) or (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
        return True
    if isinstance(node, ast.If):
        return all(_rerunnable(child) for child in [*node.body, *node.orelse])
    if isinstance(node, ast.Try):
        handlers = [child for handler in node.handlers for child in handler.body]
        return all(_rerunnable(child) for child in [*node.body, *handlers, *node.orelse, *node.finalbody])
    return False


def _names(node: ast.AST) -> tuple[frozenset[str], frozenset[str]]:
    loads: set[str] = set()
    binds: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            (binds if isinstance(sub.ctx, ast.Store) else loads).add(sub.id)
        elif isinstance(sub, ast.Attribute) and isinstance(sub.ctx, ast.Load):
            loads.add(sub.attr)
    return frozenset(loads), frozenset(binds)


def _parse_module(name: str, filename: str) -> ModuleBody | None:
    try:
        with open(filename, "rb") as fh:
            tree = ast.parse(fh.read(), filename)
    except (OSError, SyntaxError, ValueError):
        return None
    statements = []
    for index, node in enumerate(tree.body):
        code = None
        if _rerunnable(node):
            code = compile(ast.Module(body=[node], type_ignores=[]), filename, "exec")
        loads, binds = _names(node)
        statements.append(Statement(name, index, code, loads, binds))
    # A decorated definition starts at its first decorator (which runs when the `def` runs).
    spans = [(min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", ()))]),
              node.end_lineno or node.lineno) for node in tree.body]
    return ModuleBody(name, statements, spans)


@dataclass
class EnvReads:
    """Records, while the preload imports, which module-level statement read which variable.

    Every read of `os.environ` goes through `os._Environ.__getitem__` (`get`, `in`, `os.getenv` included), so
    that one method is wrapped for the duration of the preload.
    """

    raw: list[tuple[str, tuple[str, int, int], tuple[str, str, int] | None]] = field(default_factory=list)
    sites: dict[str, set[tuple[str, int]]] = field(default_factory=dict)  # key -> {(module, statement index)}
    unplaced: dict[str, str] = field(default_factory=dict)  # key -> why its read cannot be re-run
    modules: dict[str, ModuleBody] = field(default_factory=dict)  # in the order they were first read
    aliases: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (module, name) -> copies' modules
    _original: Any = None
    _environment_size: int = 0  # variables there were when the preload began

    def install(self) -> None:
        self._environment_size = len(os.environ)
        environ_type = type(os.environ)
        original = environ_type.__getitem__
        self._original = original
        raw = self.raw

        def recording_getitem(env: Any, key: str) -> Any:
            frame: types.FrameType | None = sys._getframe(1)
            while frame is not None and frame.f_code.co_filename in _PLUMBING:
                frame = frame.f_back
            if frame is not None and frame.f_globals.get("__name__") in _IGNORED_READERS:
                return original(env, key)
            # (Not id(code): a module's code object is freed after its import and its id reused.)
            reader = (frame.f_code.co_filename, frame.f_code.co_firstlineno, frame.f_lineno or 0) \
                if frame is not None else ("", 0, 0)
            module_frame: types.FrameType | None = frame
            while module_frame is not None and module_frame.f_code.co_name != "<module>":
                module_frame = module_frame.f_back
            where = None
            if module_frame is not None:
                where = (str(module_frame.f_globals.get("__name__")), module_frame.f_code.co_filename,
                         module_frame.f_lineno or 0)
            raw.append((key, reader, where))
            return original(env, key)

        environ_type.__getitem__ = recording_getitem  # type: ignore[method-assign]

    def uninstall(self) -> None:
        type(os.environ).__getitem__ = self._original  # type: ignore[method-assign]
        self._original = None
        self._analyse()

    def _analyse(self) -> None:
        keys_by_reader: dict[tuple[str, int, int], set[str]] = {}
        for key, reader, _ in self.raw:
            keys_by_reader.setdefault(reader, set()).add(key)
        scan_size = min(SCAN_MIN_KEYS, self._environment_size)
        for key, reader, where in self.raw:
            if len(keys_by_reader[reader]) >= scan_size:
                continue  # a scan of the whole environment, not a read of this variable
            if where is None:
                self.unplaced[key] = "it is read outside any module body"
                continue
            module, filename, line = where
            body = self.modules.get(module)
            if body is None:
                parsed = _parse_module(module, filename)
                if parsed is None:
                    self.unplaced[key] = f"{module} reads it at import and its source cannot be read"
                    continue
                body = self.modules[module] = parsed
            index = next((i for i, (first, last) in enumerate(body.spans) if first <= line <= last), None)
            if index is None:
                self.unplaced[key] = f"{module} reads it at import (line {line}) outside a top-level statement"
                continue
            if body.statements[index].code is None:
                self.unplaced[key] = f"{module} reads it at import in a statement that cannot be re-run " \
                                     f"(line {line})"
                continue
            self.sites.setdefault(key, set()).add((module, index))
        self.raw = []  # not needed any more: keep the server (and so every child) small
        self._index_aliases()

    def _index_aliases(self) -> None:
        """Where a global a re-run may re-bind was copied under the same name (`from m import NAME`)."""
        wanted: dict[str, list[tuple[str, object]]] = {}
        for body in self.modules.values():
            module = sys.modules.get(body.name)
            if module is None:
                continue
            for statement in body.statements:
                if statement.code is None:
                    continue  # never re-run, so never re-binds anything
                for name in statement.binds:
                    value = module.__dict__.get(name)
                    if _trackable(value):
                        wanted.setdefault(name, []).append((body.name, value))
        for other_name, other in list(sys.modules.items()):
            namespace = getattr(other, "__dict__", None)
            if not isinstance(namespace, dict):
                continue
            for name, owners in wanted.items():
                held = namespace.get(name)
                for owner, value in owners:
                    if held is value and other_name != owner:
                        self.aliases.setdefault((owner, name), []).append(other_name)

    def refusal(self, changed: set[str]) -> str | None:
        for key in sorted(changed):
            if key in self.unplaced:
                return f"{key} differs from the fork-server's and {self.unplaced[key]}"
        return None

    def rerun(self, changed: set[str]) -> None:
        """In the app child, after os.environ is the app's: refresh what the preload copied at import."""
        pending: dict[str, set[int]] = {}
        for key in changed:
            for module, index in self.sites.get(key, ()):
                pending.setdefault(module, set()).add(index)
        rebound: set[str] = set()
        done: set[tuple[str, int]] = set()
        while pending:
            for module_name in [name for name in self.modules if name in pending]:
                indexes = pending.pop(module_name)
                self._rerun_module(self.modules[module_name], indexes, rebound, done)
            # Recorded statements of other modules that use a name re-bound above (constants.HF_HOME ...).
            for key_sites in self.sites.values():
                for module_name, index in key_sites:
                    statement = self.modules[module_name].statements[index]
                    if (module_name, index) not in done and statement.loads & rebound:
                        pending.setdefault(module_name, set()).add(index)

    def _rerun_module(self, body: ModuleBody, indexes: set[int], rebound: set[str],
                      done: set[tuple[str, int]]) -> None:
        module = sys.modules.get(body.name)
        if module is None:
            done.update((body.name, index) for index in indexes)
            return
        namespace = module.__dict__
        for statement in body.statements[min(indexes):]:
            key = (body.name, statement.index)
            if key in done or statement.code is None:
                continue
            if statement.index not in indexes and not statement.loads & rebound:
                continue
            done.add(key)
            before = {name: namespace.get(name, _MISSING) for name in statement.binds}
            exec(statement.code, namespace)
            for name, old in before.items():
                new = namespace.get(name, _MISSING)
                if new is old:
                    continue
                rebound.add(name)
                for holder in self.aliases.get((body.name, name), ()):
                    other = sys.modules.get(holder)
                    if other is not None and other.__dict__.get(name) is old:
                        other.__dict__[name] = new


_MISSING = object()


def _trackable(value: object) -> bool:
    """Objects distinct enough that holding the very same one means it was copied from there."""
    if value is None or isinstance(value, bool | types.ModuleType | type | types.FunctionType):
        return False
    if isinstance(value, int) and -5 <= value <= 256:  # CPython shares these
        return False
    return not (isinstance(value, str) and len(value) <= 1)


# -- the server ----------------------------------------------------------------------------------------------


@dataclass
class Launch:
    """What the app child runs once it has left the server's loop."""

    request: dict[str, Any]
    log_fd: int
    changed: set[str]


@dataclass
class Server:
    socket_path: str
    fingerprint: str
    preload: list[str]
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    reads: EnvReads = field(default_factory=EnvReads)
    preloaded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    cuda_started: bool = False
    children: dict[int, int] = field(default_factory=dict)  # leader pid -> app pid
    started: float = field(default_factory=time.time)
    last_spawn: float = 0.0
    listener: socket.socket | None = None
    inode: int = 0  # of the socket file this server bound

    def load(self) -> None:
        self.reads.install()
        try:
            for name in self.preload:
                top = name.split(".")[0]
                try:
                    if importlib.util.find_spec(top) is None:
                        continue
                    importlib.import_module(name)
                    self.preloaded.append(name)
                except Exception as exc:  # noqa: BLE001 - the app will meet the same error, in its own log
                    self.failed[name] = f"{type(exc).__name__}: {exc}"
        finally:
            self.reads.uninstall()
        torch = sys.modules.get("torch")
        cuda = getattr(torch, "cuda", None)
        self.cuda_started = bool(cuda is not None and cuda.is_initialized()) or _libcuda_loaded()
        gc.collect()
        gc.freeze()

    def python_threads(self) -> int:
        threading = sys.modules.get("threading")
        return threading.active_count() if threading is not None else 1

    def bind(self) -> None:
        with _short_path(self.socket_path) as path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(path)
        os.chmod(self.socket_path, 0o600)
        listener.listen(64)
        self.listener = listener
        self.inode = os.stat(self.socket_path).st_ino

    def replaced(self) -> bool:
        """The socket file is gone or another server's: this one is no longer reachable, so it ends."""
        try:
            return os.stat(self.socket_path).st_ino != self.inode
        except FileNotFoundError:
            return True

    def serve(self) -> Launch | None:
        assert self.listener is not None
        while True:
            self._reap()
            if self.replaced():
                return None
            readable, _, _ = select.select([self.listener], [], [], 1.0)
            if not readable:
                continue
            conn, _ = self.listener.accept()
            try:
                conn.settimeout(30)
                request = _read_request(conn)
                op = request.get("op")
                if op == "spawn":
                    outcome = self._spawn(request, conn)
                    if isinstance(outcome, Launch):
                        return outcome  # the app child: out of the loop, to run the app
                    reply = outcome
                elif op == "hello":
                    reply = self._hello()
                elif op == "exit":
                    self._remove_socket()  # first: once answered, no one finds this server any more
                    _send(conn, {"ok": True})
                    return None
                else:
                    reply = {"ok": False, "error": f"unknown op {op!r}"}
                _send(conn, reply)
            except (OSError, ValueError) as exc:
                _log(f"request failed: {exc}")
            finally:
                conn.close()

    def _hello(self) -> dict[str, Any]:
        self._reap()
        return {
            "ok": True,
            "protocol": PROTOCOL,
            "pid": os.getpid(),
            "fingerprint": self.fingerprint,
            "children": sorted(self.children),
            "preloaded": self.preloaded,
            "failed": self.failed,
            "python_threads": self.python_threads(),
            "native_threads": len(os.listdir("/proc/self/task")),
            "cuda_started": self.cuda_started,
            "started": self.started,
            "last_spawn": self.last_spawn,
        }

    def _refusal(self, env: dict[str, str]) -> str | None:
        if self.python_threads() > 1:
            return "the fork-server has a running thread, which forking would break"
        changed = {key for key in set(env) | set(self.env) if env.get(key) != self.env.get(key)}
        native = sorted(key for key in changed if _native(key))
        if native:
            return f"{native[0]} differs from the fork-server's and is read when the interpreter or a library starts"
        if CUDA_DEVICES in changed and env.get(CUDA_DEVICES) and self.cuda_started:
            return "the fork-server's preload initialised CUDA, so CUDA_VISIBLE_DEVICES cannot change any more"
        return self.reads.refusal(changed)

    def _spawn(self, request: dict[str, Any], conn: socket.socket) -> dict[str, Any] | Launch:
        env = {str(key): str(value) for key, value in request["env"].items()}
        refusal = self._refusal(env)
        if refusal is not None:
            _log(f"refused a start: {refusal}")
            return {"ok": False, "refused": refusal}
        changed = {key for key in set(env) | set(self.env) if env.get(key) != self.env.get(key)}
        try:
            log_fd = os.open(request["log_file"], os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            return {"ok": False, "error": f"cannot open the log file: {exc}"}
        ready_r, ready_w = os.pipe()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        leader = os.fork()
        if leader == 0:
            os.close(ready_r)
            launch = _lead(request, log_fd, ready_w, changed, [self.listener, conn])
            return launch  # only the app process gets here: the leader ends inside _lead
        os.close(ready_w)
        os.close(log_fd)
        try:
            app_pid = _read_ready(ready_r, timeout=30.0)
        finally:
            os.close(ready_r)
        if app_pid is None:
            return {"ok": False, "error": "the forked child did not start"}
        self.children[leader] = app_pid
        self.last_spawn = time.time()
        # Read now: the leader cannot vanish before this server reaps it, even if the app has already failed.
        return {"ok": True, "pid": leader, "app_pid": app_pid, "start_time": _start_time(leader)}

    def _reap(self) -> None:
        while self.children:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            self.children.pop(pid, None)

    def _remove_socket(self) -> None:
        if not self.replaced():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_path)


def _lead(request: dict[str, Any], log_fd: int, ready_w: int, changed: set[str],
          server_sockets: list[socket.socket | None]) -> Launch:
    """The leader: a new session, the app forked inside it, then wait and record its exit status."""
    try:
        os.setsid()
        for sock in server_sockets:
            if sock is not None:
                sock.close()  # closes this process's copy only (no shutdown)
        app = os.fork()
        if app == 0:
            os.close(ready_w)
            return Launch(request, log_fd, changed)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            # Handled, not ignored (the app, forked just before, keeps its defaults), and before the server
            # answers: a group-wide SIGTERM from then on always finds the leader able to record the status.
            signal.signal(sig, _ignore)
        os.write(ready_w, str(app).encode())
        os.close(ready_w)
        _redirect(log_fd)
        os.chdir(request["cwd"])  # as the plain path's wrapper shell: every process of the app's group is there
        os.environ.clear()  # (nothing here reads it: only for /proc/<pid>/environ, as the wrapper shell has it)
        os.environ.update({str(key): str(value) for key, value in request["env"].items()})
        _show_as(["spacehub-leader", request["exit_file"]], dict(os.environ))
        status = _wait(app)
        with open(request["exit_file"], "w") as fh:
            fh.write(f"{status}\n")
    except BaseException:  # noqa: BLE001 - the leader must never fall back into the server's loop
        os._exit(127)
    os._exit(0)


def _start_time(pid: int) -> int:
    """The process's start time in clock ticks after boot (field 22 of /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as fh:
        text = fh.read()
    return int(text[text.rindex(")") + 2:].split()[19])


def _ignore(signum: int, frame: object) -> None:
    return None


def _wait(pid: int) -> int:
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except InterruptedError:
            continue
        if os.WIFSTOPPED(status) or os.WIFCONTINUED(status):
            continue
        code = os.waitstatus_to_exitcode(status)
        return code if code >= 0 else 128 - code  # killed by signal N: 128+N, as /bin/sh reports it


def _redirect(log_fd: int) -> None:
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)


def _read_ready(fd: int, timeout: float) -> int | None:
    readable, _, _ = select.select([fd], [], [], timeout)
    if not readable:
        return None
    data = os.read(fd, 64)
    return int(data) if data.strip().isdigit() else None


def _read_request(conn: socket.socket) -> dict[str, Any]:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > 16 * 1024 * 1024:
            raise ValueError("request too large")
    request = json.loads(data)
    if not isinstance(request, dict):
        raise ValueError("a request is a JSON object")
    return request


def _send(conn: socket.socket, reply: dict[str, Any]) -> None:
    conn.sendall(json.dumps(reply).encode() + b"\n")


def _log(message: str) -> None:
    print(f"[fork-server {os.getpid()}] {message}", file=sys.stderr, flush=True)


def _libcuda_loaded() -> bool:
    try:
        with open("/proc/self/maps") as fh:
            return "libcuda.so" in fh.read()
    except OSError:
        return False


class _short_path:
    """A unix socket path fits in 108 bytes; a longer one is reached through /proc/self/fd/<dir fd>/<name>."""

    def __init__(self, path: str) -> None:
        self.path, self.fd = path, -1

    def __enter__(self) -> str:
        if len(self.path.encode()) < 100:
            return self.path
        self.fd = os.open(os.path.dirname(self.path), os.O_PATH)
        return f"/proc/self/fd/{self.fd}/{os.path.basename(self.path)}"

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)


# -- the app child -------------------------------------------------------------------------------------------


def run_app(server: Server, launch: Launch) -> None:
    """Become `python <app_file>` started in the app folder with the space's environment, and run it."""
    request = launch.request
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _redirect(launch.log_fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update({str(key): str(value) for key, value in request["env"].items()})
    time.tzset()
    tempfile.tempdir = None  # gettempdir() caches TMPDIR on first use
    server.reads.rerun(launch.changed)
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()  # its global generator was seeded in the server; `random` reseeds itself at fork
    app_file = os.path.abspath(request["app_file"])
    sys.argv = [app_file]
    sys.orig_argv = [sys.executable, request["app_file"]]
    _show_as(sys.orig_argv, dict(os.environ))
    sys.path[0] = os.path.dirname(app_file)
    try:
        runpy.run_path(app_file, run_name="__main__")
    except SystemExit:
        raise
    except BaseException as exc:
        # As a fresh interpreter prints it: from the app's own frames, not the fork-server's.
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != app_file:
            tb = tb.tb_next
        exc.__traceback__ = tb or exc.__traceback__  # (the hook prints the exception's own traceback)
        sys.excepthook(type(exc), exc, exc.__traceback__)
        sys.stderr.flush()
        if isinstance(exc, KeyboardInterrupt):
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        raise SystemExit(1) from None


def _show_as(argv: list[str], env: dict[str, str]) -> None:
    """Write the app's command line and environment over the server's initial ones (the memory that
    /proc/self/cmdline and /proc/self/environ read), each only if it fits; NUL-padded.

    Safe: Python copied argv at start-up, and os.environ.clear() removed every pointer glibc kept into the old
    environment strings.
    """
    try:
        with open("/proc/self/stat") as fh:
            text = fh.read()
        fields = [int(field) for field in text[text.rindex(")") + 2:].split()[45:49]]
    except (OSError, ValueError):
        return
    arg_start, arg_end, env_start, env_end = fields
    for start, end, items in ((arg_start, arg_end, argv), (env_start, env_end, [f"{k}={v}" for k, v in env.items()])):
        data = b"".join(item.encode("utf-8", "surrogateescape") + b"\0" for item in items)
        if start and len(data) <= end - start:
            ctypes.memmove(start, data + b"\0" * (end - start - len(data)), end - start)


def main(argv: list[str]) -> tuple[Server, Launch] | None:
    socket_path, fingerprint, preload, lock_fd = argv
    server = Server(socket_path=socket_path, fingerprint=fingerprint,
                    preload=[name for name in preload.split(",") if name])
    started = time.monotonic()
    server.load()
    _log(f"preloaded {', '.join(server.preloaded) or 'nothing'} in {time.monotonic() - started:.1f}s"
         + (f"; failed: {server.failed}" if server.failed else ""))
    server.bind()
    os.close(int(lock_fd))  # listening now: others may find this server, no need to start one
    launch = server.serve()
    if launch is None:
        _log("exiting")
        return None
    return server, launch


if __name__ == "spacehub_forkserver":
    _child = main(sys.argv[1:])
    if _child is not None:
        run_app(*_child)
