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
server is started meanwhile. It never starts a thread: a `threading` thread in a forking process would leave
locks held forever in the child, so forks are refused if one exists. (Native thread pools that re-create
themselves after a fork, as OpenBLAS's do through `pthread_atfork`, are fine.)

**Protocol.** One JSON line in, one JSON line out, per connection on the unix socket:

    {"op": "hello"}  -> {"ok": true, "pid", "fingerprint", "children", "preloaded", "failed", ...}
    {"op": "spawn", "app_file", "cwd", "env", "log_file", "exit_file"}
                     -> {"ok": true, "pid", "start_time"} or {"ok": false, "refused" or "error": <reason>}
    {"op": "exit"}   -> {"ok": true}: the server retires (below)

**A start** is one fork. The child calls setsid() at once: it leads its own session and process group (stop and
freeze signal the group; it outlives the server), and only then does the server answer with its pid. The child
then takes a fresh interpreter's signal handlers, fds 0 = /dev/null and 1, 2 = the log file, the app folder as
cwd, exactly the space's environment (also written over the server's in the memory /proc/<pid>/cmdline and
/proc/<pid>/environ show), and runs the app file with `runpy.run_path(app_file, run_name="__main__")`; an
uncaught exception is printed from the app's own frames and exits 1, as `python app.py` would.

The server is the app's parent, so it records the exit status (128+N if killed by signal N, as the plain path's
`/bin/sh` wrapper reports it) in the handle's exit file as it reaps it (SIGCHLD wakes it). It therefore never
leaves while it has children: SIGTERM/SIGINT/SIGHUP, an `exit` request, or finding its socket taken over by a
newer server make it *retire* (socket removed, no more starts), and it ends once its last child has. Only a
SIGKILL of the server loses statuses: its apps live on (reparented), and their exits read as -1 (unknown).
(A forked "leader" per app, as the shell wrapper is on the plain path, would keep statuses even then, but costs
~3 MB of private memory per app: 10% of a forked hello app.)

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
    children: dict[int, str] = field(default_factory=dict)  # app pid -> its exit file
    started: float = field(default_factory=time.time)
    last_spawn: float = 0.0
    listener: socket.socket | None = None
    inode: int = 0  # of the socket file this server bound
    retiring: bool = False  # no more starts: it only records its children's exits, then ends
    retire_asked: bool = False  # by a signal (acted on in the loop, never inside the handler)
    wake_r: int = -1  # readable when a signal (SIGCHLD, SIGTERM) has arrived
    wake_w: int = -1

    def load(self) -> None:
        self.reads.install()
        try:
            for name in self.preload:
                try:
                    # Only what this environment has (a module of another version of a package is no error).
                    if importlib.util.find_spec(name.split(".")[0]) is None or importlib.util.find_spec(name) is None:
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
        # Exits are recorded as they happen: SIGCHLD wakes the loop (through the wakeup fd); SIGTERM, SIGINT
        # and SIGHUP retire the server instead of killing it, so that no child's exit status is lost.
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, _ignore)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._retire_on_signal)

    def replaced(self) -> bool:
        """The socket file is gone or another server's: no one can reach this one any more."""
        try:
            return os.stat(self.socket_path).st_ino != self.inode
        except FileNotFoundError:
            return True

    def serve(self) -> Launch | None:
        """Answer requests until retired and childless; returns a Launch in a forked app, None in the server."""
        while True:
            self._reap()
            if not self.retiring and (self.retire_asked or self.replaced()):
                self.retire()
            if self.retiring and not self.children:
                return None
            watched = [self.wake_r] + ([self.listener] if self.listener is not None else [])
            readable, _, _ = select.select(watched, [], [], 1.0)
            if self.wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    os.read(self.wake_r, 4096)
            if self.listener is None or self.listener not in readable:
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
                    self.retire()  # first: once answered, no one finds this server any more
                    reply = {"ok": True, "children": sorted(self.children)}
                else:
                    reply = {"ok": False, "error": f"unknown op {op!r}"}
                _send(conn, reply)
            except (OSError, ValueError) as exc:
                _log(f"request failed: {exc}")
            finally:
                conn.close()

    def retire(self) -> None:
        """Take no more starts: the socket goes (if still ours); the server ends once its children have."""
        if self.retiring:
            return
        self.retiring = True
        if not self.replaced():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_path)
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        _log(f"retiring; {len(self.children)} app(s) still running")

    def _retire_on_signal(self, signum: int, frame: object) -> None:
        self.retire_asked = True  # the wakeup fd wakes the loop, which retires

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
            # O_APPEND is load-bearing: the supervisor empties the file under the running app once it is over its
            # cap, and only an appending writer's next write lands at the new end (spacehub_runner's logfile.py).
            log_fd = os.open(request["log_file"], os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            return {"ok": False, "error": f"cannot open the log file: {exc}"}
        ready_r, ready_w = os.pipe()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        # The server's own handlers (retire on SIGTERM ...) must never run in a child: signals wait until the
        # child has a fresh interpreter's handlers.
        signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED)
        try:
            app = os.fork()
        except OSError as exc:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _HANDLED)
            for fd in (ready_r, ready_w, log_fd):
                os.close(fd)
            return {"ok": False, "error": f"fork failed: {exc}"}
        if app != 0:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _HANDLED)
        if app == 0:
            try:
                _fresh_signals()
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _HANDLED)
                os.setsid()  # its own session and group, led by itself: stop and freeze signal the group
                for fd in (ready_r, self.wake_r, self.wake_w):
                    os.close(fd)
                for sock in (self.listener, conn):
                    if sock is not None:
                        sock.close()  # this process's copy only (no shutdown)
                os.write(ready_w, b"ok")
                os.close(ready_w)
            except BaseException:  # noqa: BLE001 - a child must never fall back into the server's loop
                os._exit(127)
            return Launch(request, log_fd, changed)
        os.close(ready_w)
        os.close(log_fd)
        try:
            readable, _, _ = select.select([ready_r], [], [], 30.0)
            ready = bool(readable) and os.read(ready_r, 16) == b"ok"
        finally:
            os.close(ready_r)
        # Recorded before anything else: its exit status is this server's to write, whatever happens next.
        self.children[app] = request["exit_file"]
        if not ready:
            return {"ok": False, "error": "the forked child did not start"}
        self.last_spawn = time.time()
        # Read now: the child cannot vanish before this server reaps it, even if the app has already failed.
        return {"ok": True, "pid": app, "start_time": _start_time(app)}

    def _reap(self) -> None:
        """Collect exited children and write each one's status (128+N if killed by signal N, as /bin/sh
        reports it) to its exit file."""
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            exit_file = self.children.pop(pid, None)
            if exit_file is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            try:
                _write_atomically(exit_file, f"{code if code >= 0 else 128 - code}\n")
            except OSError as exc:
                _log(f"could not record the exit of {pid} in {exit_file}: {exc}")


def _write_atomically(path: str, text: str) -> None:
    partial = f"{path}.partial"
    with open(partial, "w") as fh:
        fh.write(text)
    os.replace(partial, path)


def _start_time(pid: int) -> int:
    """The process's start time in clock ticks after boot (field 22 of /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as fh:
        text = fh.read()
    return int(text[text.rindex(")") + 2:].split()[19])


def _ignore(signum: int, frame: object) -> None:
    return None


_HANDLED = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


def _fresh_signals() -> None:
    """The signal dispositions a fresh interpreter starts with (and no wakeup fd)."""
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _redirect(log_fd: int) -> None:
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)


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
