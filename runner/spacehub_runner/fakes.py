"""In-memory implementations of the plug points, for unit tests of the logic above them (jobs, lifecycle,
supervisor) where a real build or app would only add time.

They are real implementations, not mocks: `FakeRuntime` serves each app over HTTP on 127.0.0.1 (so readiness
probes and the proxy reach it), keeps its apps on a `FakeHost` shared by every runtime object made with it (as
a Docker engine is shared by the processes that talk to it, so a new runtime finds an app from its JSON handle
alone), and offers the optional abilities (freeze/thaw, managed resources, storage). It passes the same contract
suite as the process and docker runtimes (tests/contract/). `FakeBuilder` names its artifact by content as the
real builders do.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from spacehub.errors import BuildFailed, StartFailed
from spacehub_runner.builders.process import content_hash, tree_hash
from spacehub_runner.plugs import NO_INPUTS, Artifact, BuildInputs, BuildPlan, Handle, LogFn, RunSpec

ARTIFACT_KIND = "fake-app"
NAME = "fake"
# How long a request to a frozen app waits for a thaw before it is dropped (a frozen process never answers;
# a test must not hang for ever on one).
FROZEN_WAIT_S = 30.0


class FakeBuilder:
    """Builds `fake-app` artifacts: a content hash of the plan, the tree and the build inputs (secret names
    only, as the docker builder does). `fail` makes every build fail with that message; `exit_code` makes the
    artifact's apps exit at once with it (a crash at start)."""

    name = NAME

    def __init__(self, *, fail: str | None = None, exit_code: int | None = None) -> None:
        self.fail = fail
        self.exit_code = exit_code

    def build(self, plan: BuildPlan, src: Path, log: LogFn, inputs: BuildInputs = NO_INPUTS) -> Artifact:
        if not src.is_dir():
            raise BuildFailed(f"no source tree at {src}")
        if self.fail is not None:
            log(f"fake build failed: {self.fail}")
            raise BuildFailed(self.fail)
        tree = tree_hash(src)
        key = content_hash({"plan": plan.to_json(), "tree": tree, "variables": dict(inputs.variables),
                            "secrets": sorted(inputs.secrets)})
        log(f"fake build of a {plan.recipe} space: {key[:12]}")
        extra: dict[str, object] = {"runtime": NAME, "tree_hash": tree}
        if self.exit_code is not None:
            extra["exit_code"] = self.exit_code
        return Artifact(kind=ARTIFACT_KIND, key=key, ref=f"fake/{key}", extra=extra)


@dataclass
class _App:
    app_id: str
    space_id: int
    revision: str
    server: ThreadingHTTPServer | None
    lines: list[str] = field(default_factory=list)
    exit_code: int | None = None
    running: threading.Event = field(default_factory=threading.Event)  # cleared while frozen

    def log(self, line: str) -> None:
        self.lines.append(line)


class FakeHost:
    """The machine fake apps run on. Share one between runtime objects to model a restart; `close` ends every
    app (call it when a test is done)."""

    def __init__(self) -> None:
        self.apps: dict[str, _App] = {}
        self.volumes: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def next_id(self) -> str:
        with self._lock:
            return f"fake-{next(self._ids)}"

    def crash(self, handle: Handle, code: int = 1) -> None:
        """The app dies on its own with `code` (as a process would)."""
        app = self.apps.get(str(handle.data.get("app_id")))
        if app is not None and app.exit_code is None:
            app.log(f"crashed with code {code}")
            _end(app, code)

    def close(self) -> None:
        for app in list(self.apps.values()):
            if app.exit_code is None:
                _end(app, 0)


class FakeRuntime:
    """Runs `fake-app` artifacts: each app an HTTP server on 127.0.0.1 that answers every GET with 200 and its
    revision (and `GET /exit?code=N` ends it with that code). Its handle names the app on the `FakeHost`;
    nothing about apps is kept on `self`."""

    name = NAME

    def __init__(self, host: FakeHost) -> None:
        self.host = host

    # -- the Runtime protocol ---------------------------------------------------------------------------

    def start(self, spec: RunSpec, artifact: Artifact) -> Handle:
        if artifact.kind != ARTIFACT_KIND:
            raise StartFailed(f"the fake runtime cannot run a {artifact.kind!r} artifact")
        app = _App(app_id=self.host.next_id(), space_id=spec.space_id, revision=spec.revision, server=None)
        app.running.set()
        port = 0
        exit_code = artifact.extra.get("exit_code")
        if exit_code is not None:
            app.log(f"starting revision {spec.revision[:12]}")
            app.log(f"exited at start with code {exit_code}")
            app.exit_code = int(exit_code)
        else:
            app.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(app))
            app.server.daemon_threads = True
            port = int(app.server.server_address[1])
            threading.Thread(target=app.server.serve_forever, name=app.app_id, daemon=True).start()
            app.log(f"serving revision {spec.revision[:12]} on 127.0.0.1:{port}")
        if spec.storage:
            self.host.volumes.setdefault(self.volume_name(spec.space_id), spec.space_id)
        self.host.apps[app.app_id] = app
        return _handle(app, port)

    def stop(self, handle: Handle) -> None:
        app = self._app(handle)
        if app is not None and app.exit_code is None:
            app.log("stopped")
            _end(app, 0)

    def poll(self, handle: Handle) -> int | None:
        app = self._app(handle)
        return -1 if app is None else app.exit_code

    def logs(self, handle: Handle) -> Iterator[str]:
        app = self._app(handle)
        return iter(list(app.lines) if app is not None else [])

    # -- Freezable ----------------------------------------------------------------------------------------

    def freeze(self, handle: Handle) -> None:
        app = self._app(handle)
        if app is not None and app.exit_code is None:
            app.running.clear()

    def thaw(self, handle: Handle) -> None:
        app = self._app(handle)
        if app is not None:
            app.running.set()

    def is_frozen(self, handle: Handle) -> bool:
        app = self._app(handle)
        return app is not None and app.exit_code is None and not app.running.is_set()

    # -- ManagedResources -----------------------------------------------------------------------------------

    def list_managed(self) -> list[Handle]:
        apps = sorted(self.host.apps.values(), key=lambda a: int(a.app_id.rsplit("-", 1)[1]), reverse=True)
        return [_handle(app, app.server.server_address[1] if app.server else 0) for app in apps]

    # -- Storage ----------------------------------------------------------------------------------------------

    def volume_name(self, space_id: int) -> str:
        return f"fake-data-{int(space_id)}"

    def list_volumes(self) -> dict[str, int]:
        return dict(self.host.volumes)

    def remove_volume(self, name: str) -> None:
        self.host.volumes.pop(name, None)

    def _app(self, handle: Handle) -> _App | None:
        return self.host.apps.get(str(handle.data.get("app_id")))


def _handle(app: _App, port: int | str) -> Handle:
    return Handle(
        runtime=NAME,
        target=f"127.0.0.1:{port}" if port else "",
        data={"app_id": app.app_id, "container_id": app.app_id, "space_id": app.space_id, "revision": app.revision},
    )


def _end(app: _App, code: int) -> None:
    app.exit_code = code
    app.running.set()  # a frozen app's waiting requests end with it
    if app.server is not None:
        app.server.shutdown()
        app.server.server_close()


def _handler(app: _App) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            if not app.running.wait(FROZEN_WAIT_S) or app.exit_code is not None:
                self.close_connection = True
                return
            path, _, query = self.path.partition("?")
            if path == "/exit":  # the app ends itself, as a real one may: `GET /exit?code=N`
                code = int(query.removeprefix("code=") or "0")
                app.log(f"exiting with code {code}")
                threading.Thread(target=_end, args=(app, code), daemon=True).start()
                self.close_connection = True
                return
            body = f"{app.revision}\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
            app.log(format % args)

    return Handler
