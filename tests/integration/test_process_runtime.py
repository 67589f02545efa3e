"""The process builder and runtime, for real: real uv, real gradio, real processes; no mocks.

The virtualenv is built once per session (a session-scoped data dir) and shared by every test here. uv's cache
is the host's (UV_CACHE_DIR, else uv's default user cache), so runs after the first install from a warm cache.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.metadata
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from spacehub.errors import BuildFailed, StartFailed
from spacehub.settings import Settings
from spacehub_runner import backends
from spacehub_runner.builders.process import ENV_MARKER, ProcessBuilder
from spacehub_runner.plugs import Artifact, BuildPlan, Handle, RunSpec
from spacehub_runner.runtimes.process import ProcessRuntime, app_env, poll_handle, wait_ready
from support.server import fork_server_pids

pytestmark = pytest.mark.timeout(240)

GRADIO_VERSION = importlib.metadata.version("gradio")  # the host's: uv finds it in a warm cache
PLATFORM_SECRET = "SPACEHUB_TEST_SECRET_TOKEN"

HELLO_APP = """
import json
import os
from pathlib import Path

import gradio as gr

# Let the test see exactly what the app's environment holds.
Path(os.environ["ENV_DUMP_FILE"]).write_text(json.dumps(dict(os.environ)))


def greet(name):
    return f"Hello {name}!"


gr.Interface(greet, "text", "text").launch()
"""

CRASHING_APP = """
import gradio  # a real, slow import first: the failure must come from the app, not from a missing package

raise RuntimeError("boom at start")
"""

# Serves HTTP without gradio and ignores SIGTERM, so only SIGKILL ends it.
STUBBORN_APP = """
import http.server
import os
import signal

signal.signal(signal.SIGTERM, signal.SIG_IGN)
server = http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), http.server.SimpleHTTPRequestHandler)
server.serve_forever()
"""

# Starts the app from a separate process that is then killed, as an RQ work-horse or a worker may die.
LAUNCHER = """
import json, sys, time
from pathlib import Path
from spacehub.settings import Settings
from spacehub_runner.plugs import Artifact, BuildPlan, RunSpec
from spacehub_runner.runtimes.process import ProcessRuntime

args = json.loads(sys.argv[1])
spec = RunSpec(space_id=args["space_id"], space_key="alice/hello", revision="0" * 40,
               plan=BuildPlan.from_json(args["plan"]), env=args["env"])
runtime = ProcessRuntime(Settings(data_dir=Path(args["data_dir"])))
handle = runtime.start(spec, Artifact.from_json(args["artifact"]))
print(json.dumps(handle.to_json()), flush=True)
time.sleep(600)
"""


@dataclass
class Built:
    plan: BuildPlan
    src: Path
    artifact: Artifact
    log: list[str]
    seconds: float


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UV_CACHE_DIR", os.environ.get("UV_CACHE_DIR") or str(Path.home() / ".cache" / "uv"))
        # A platform secret in the worker's environment, which no app may see.
        mp.setenv(PLATFORM_SECRET, "s3cret-platform-value")
        settings = Settings(
            data_dir=tmp_path_factory.mktemp("spacehub-data"),
            ready_timeout_s=90,
            stop_grace_s=5,
            build_timeout_s=600,
        )
        yield settings
    # Fork-servers outlive their starters by design (they hold the apps forked from them): end this run's here.
    for pid in fork_server_pids(settings.data_dir):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)


def write_tree(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def build(settings: Settings, plan: BuildPlan, src: Path) -> Built:
    lines: list[str] = []
    started = time.monotonic()
    artifact = ProcessBuilder(settings).build(plan, src, lines.append)
    return Built(plan, src, artifact, lines, time.monotonic() - started)


@pytest.fixture(scope="session")
def hello(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Built:
    plan = BuildPlan(recipe="gradio", sdk_version=GRADIO_VERSION)
    src = write_tree(tmp_path_factory.mktemp("hello-src"), {"app.py": HELLO_APP, "README.md": "# hello\n"})
    (src / ".git").mkdir()  # a checkout's .git is neither hashed nor copied
    (src / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    # A build that died half-way left this env folder without its marker: it must be wiped, not trusted.
    half_built = ProcessBuilder(settings).env_path(plan)
    half_built.mkdir(parents=True)
    (half_built / "leftover").write_text("from a build that died\n")
    built = build(settings, plan, src)
    print(f"\nfirst env build: {built.seconds:.1f}s")
    return built


def get(target: str, path: str = "/") -> tuple[int, str]:
    host, _, port = target.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def non_loopback_ipv4() -> str | None:
    """This machine's address on its default route, if it has one (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.123", 9))
        except OSError:
            return None
        address: str = sock.getsockname()[0]
    return None if address.startswith("127.") else address


def listen_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp* shows them) that listen on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A = LISTEN
                found.add(address)
    return found


# -- builds --------------------------------------------------------------------------------------------


def test_build_makes_a_process_env_artifact(hello: Built, settings: Settings) -> None:
    artifact = hello.artifact
    assert artifact.kind == "process-env"
    venv = Path(artifact.env_path)
    assert venv.parent == settings.envs_dir
    assert (venv / ENV_MARKER).is_file()
    assert not (venv / "leftover").exists(), "a half-built env must be wiped and rebuilt"
    assert any("half-built" in line for line in hello.log)
    version = subprocess.run(
        [venv / "bin" / "python", "-c", "import gradio; print(gradio.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert version.stdout.strip() == GRADIO_VERSION
    app_dir = Path(artifact.ref)
    assert app_dir.parent == settings.apps_dir
    assert (app_dir / "app.py").read_text() == HELLO_APP
    assert not (app_dir / ".git").exists()
    # uv's progress reached the log as it ran, line by line.
    assert any(line.startswith(("Resolved", "Installed")) for line in hello.log)


def test_same_tree_and_plan_reuses_env_and_app(hello: Built, settings: Settings) -> None:
    again = build(settings, hello.plan, hello.src)
    print(f"\ncached env build: {again.seconds:.3f}s")
    assert again.artifact == hello.artifact
    assert any(line.startswith("reusing environment") for line in again.log)
    assert any(line.startswith("reusing app code") for line in again.log)
    assert not any(line.startswith("Resolved") for line in again.log), "uv must not run again"


def test_bad_requirement_fails_the_build_with_uv_message(settings: Settings, tmp_path: Path) -> None:
    plan = BuildPlan(
        recipe="gradio", sdk_version=GRADIO_VERSION, requirements=("spacehub-no-such-package-xyz==1.0",)
    )
    src = write_tree(tmp_path / "src", {"app.py": HELLO_APP})
    with pytest.raises(BuildFailed) as failure:
        build(settings, plan, src)
    message = failure.value.message
    assert "spacehub-no-such-package-xyz" in message
    assert "No solution found" in message
    assert not (ProcessBuilder(settings).env_path(plan) / ENV_MARKER).exists()


def test_docker_recipe_is_not_buildable_here(settings: Settings, tmp_path: Path) -> None:
    src = write_tree(tmp_path / "src", {"Dockerfile": "FROM scratch\n"})
    with pytest.raises(BuildFailed, match="needs the Docker runtime"):
        build(settings, BuildPlan(recipe="docker"), src)


# -- a running app --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def running(hello: Built, settings: Settings) -> Iterator[tuple[Handle, Path, int]]:
    """The hello app, started by a launcher process that is then killed; yields (handle, env dump, status)."""
    env_dump = settings.data_dir / "hello-env.json"
    args = {
        "space_id": 7,
        "data_dir": str(settings.data_dir),
        "plan": hello.plan.to_json(),
        "artifact": hello.artifact.to_json(),
        "env": {"SPACE_ID": "alice/hello", "SYSTEM": "spaces", "ENV_DUMP_FILE": str(env_dump)},
    }
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, json.dumps(args)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert launcher.stdout is not None
    handle = Handle.from_json(json.loads(launcher.stdout.readline()))
    os.killpg(launcher.pid, signal.SIGKILL)  # the starter dies, and its whole process group with it
    launcher_status = launcher.wait()
    launcher.stdout.close()
    try:
        yield handle, env_dump, launcher_status
    finally:
        ProcessRuntime(settings).stop(handle)


def test_app_becomes_ready_and_serves_gradio(running: tuple[Handle, Path, int], settings: Settings) -> None:
    handle, _, _ = running
    wait_ready(handle, settings.ready_timeout_s)
    assert handle.target == f"127.0.0.1:{handle.data['port']}"
    status, body = get(handle.target, "/")
    assert status == 200
    assert "gradio" in body.lower()
    assert ProcessRuntime(settings).poll(handle) is None


def test_app_outlives_the_process_that_started_it(running: tuple[Handle, Path, int]) -> None:
    handle, _, launcher_status = running
    assert launcher_status == -signal.SIGKILL
    assert poll_handle(handle) is None
    assert get(handle.target, "/")[0] == 200


def test_app_env_is_built_from_scratch(running: tuple[Handle, Path, int], settings: Settings) -> None:
    handle, env_dump, _ = running
    env = json.loads(env_dump.read_text())
    assert not [key for key in env if key.startswith("SPACEHUB_")]
    assert "s3cret-platform-value" not in json.dumps(env)
    assert not [key for key in env if key.startswith(("PIP_", "UV_"))]  # nor the platform's other settings
    assert env["SPACE_ID"] == "alice/hello"
    assert env["SYSTEM"] == "spaces"
    port = str(handle.data["port"])
    assert env["GRADIO_SERVER_NAME"] == "127.0.0.1"
    assert env["GRADIO_SERVER_PORT"] == env["PORT"] == port
    assert env["GRADIO_NUM_PORTS"] == "1"
    assert env["GRADIO_ANALYTICS_ENABLED"] == "False"
    assert env["HF_HUB_DISABLE_TELEMETRY"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["CUDA_VISIBLE_DEVICES"] == ""
    assert env["PATH"].split(":")[0] == str(Path(running_env_path(settings)) / "bin")
    for key in ("HOME", "GRADIO_TEMP_DIR"):
        assert Path(env[key]).is_relative_to(settings.data_dir)


def test_app_env_gives_only_the_allocated_gpus(hello: Built, tmp_path: Path) -> None:
    plan = BuildPlan(recipe="gradio")
    spec = RunSpec(space_id=1, space_key="a/b", revision="r", plan=plan, env={}, gpu_ids=("1", "3"))
    env = app_env(spec, hello.artifact, port=7860, home=tmp_path, tmp=tmp_path)
    assert env["CUDA_VISIBLE_DEVICES"] == "1,3"


def running_env_path(settings: Settings) -> Path:
    return ProcessBuilder(settings).env_path(BuildPlan(recipe="gradio", sdk_version=GRADIO_VERSION))


def test_app_listens_on_loopback_only(running: tuple[Handle, Path, int]) -> None:
    handle, _, _ = running
    port = handle.data["port"]
    assert listen_addresses(port) == {"0100007F"}  # 127.0.0.1, and nothing on 0.0.0.0 or ::
    address = non_loopback_ipv4()
    if address is not None:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((address, port), timeout=5).close()


def test_logs_hold_the_app_output(running: tuple[Handle, Path, int], settings: Settings) -> None:
    handle, _, _ = running
    lines = list(ProcessRuntime(settings).logs(handle))
    assert any("Running on local URL" in line for line in lines)


def test_stop_ends_the_app_and_is_idempotent(running: tuple[Handle, Path, int], settings: Settings) -> None:
    handle, _, _ = running
    runtime = ProcessRuntime(settings)
    runtime.stop(handle)
    status = runtime.poll(handle)
    assert isinstance(status, int)
    runtime.stop(handle)  # again: nothing left to stop, no error
    assert runtime.poll(handle) == status
    with pytest.raises(ConnectionRefusedError):
        get(handle.target, "/")


# -- failures and other recipes -------------------------------------------------------------------------


def test_app_crashing_at_start_gives_its_traceback(hello: Built, settings: Settings, tmp_path: Path) -> None:
    plan = BuildPlan(recipe="gradio", sdk_version=GRADIO_VERSION, apt_packages=("ffmpeg",))
    crashing = build(settings, plan, write_tree(tmp_path / "src", {"app.py": CRASHING_APP}))
    assert crashing.artifact.env_path == hello.artifact.env_path, "same environment, shared venv"
    assert any(line.startswith("warning:") and "ffmpeg" in line for line in crashing.log)
    runtime = ProcessRuntime(settings)
    spec = RunSpec(space_id=8, space_key="alice/crash", revision="1" * 40, plan=plan, env={})
    handle = runtime.start(spec, crashing.artifact)
    try:
        with pytest.raises(StartFailed) as failure:
            wait_ready(handle, settings.ready_timeout_s)
        assert "Traceback (most recent call last)" in failure.value.message
        assert "RuntimeError: boom at start" in failure.value.message
        assert runtime.poll(handle) == 1
    finally:
        runtime.stop(handle)


def test_static_space_is_served(settings: Settings, tmp_path: Path) -> None:
    src = write_tree(tmp_path / "src", {"index.html": "<h1>static hello</h1>\n"})
    static = build(settings, BuildPlan(recipe="static"), src)  # no venv, no uv
    assert static.artifact.kind == "static"
    assert static.artifact.env_path == ""
    runtime = ProcessRuntime(settings)
    plan = BuildPlan(recipe="static")
    spec = RunSpec(space_id=9, space_key="alice/static", revision="2" * 40, plan=plan, env={})
    handle = runtime.start(spec, static.artifact)
    try:
        wait_ready(handle, 30)
        assert get(handle.target, "/") == (200, "<h1>static hello</h1>\n")
    finally:
        runtime.stop(handle)
    assert runtime.poll(handle) is not None


def test_stop_escalates_to_sigkill_and_finds_an_orphaned_app(
    hello: Built, settings: Settings, tmp_path: Path
) -> None:
    plan = BuildPlan(recipe="gradio", sdk_version=GRADIO_VERSION, app_file="stubborn.py")
    stubborn = build(settings, plan, write_tree(tmp_path / "src", {"stubborn.py": STUBBORN_APP}))
    # The plain path's wrapper shell is what this kills (a forked app has none: test_forkserver.py).
    quick = Settings(data_dir=settings.data_dir, stop_grace_s=0.5, fork_server=False)
    runtime = ProcessRuntime(quick)
    spec = RunSpec(space_id=10, space_key="alice/stubborn", revision="3" * 40, plan=plan, env={})
    handle = runtime.start(spec, stubborn.artifact)
    try:
        wait_ready(handle, 30)
        # Kill only the wrapper shell: the app itself lives on in the group and still counts as running.
        os.kill(handle.data["pid"], signal.SIGKILL)
        assert runtime.poll(handle) is None
        assert get(handle.target, "/")[0] == 200
    finally:
        runtime.stop(handle)
    assert runtime.poll(handle) == 128 + signal.SIGKILL  # SIGTERM was ignored; stop had to SIGKILL
    with pytest.raises(ConnectionRefusedError):
        get(handle.target, "/")


def test_a_recycled_pid_is_never_taken_for_the_app(settings: Settings, tmp_path: Path) -> None:
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        start_time = int(Path(f"/proc/{stranger.pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        handle = Handle(
            runtime="process",
            target="127.0.0.1:1",
            data={
                "pid": stranger.pid,
                "pgid": stranger.pid,
                "start_time": start_time - 1,  # the app that had this pid started earlier
                "log_file": str(tmp_path / "app.log"),
                "exit_file": str(tmp_path / "app.exit"),
            },
        )
        runtime = ProcessRuntime(settings)
        assert runtime.poll(handle) == -1  # gone, and it left no exit status
        runtime.stop(handle)
        assert stranger.poll() is None, "stop must not signal a process that merely reuses the pid"
    finally:
        stranger.kill()
        stranger.wait()


def test_registry_picks_process_by_name(settings: Settings) -> None:
    assert isinstance(backends.builder_for(settings, "process"), ProcessBuilder)
    assert isinstance(backends.runtime_for(settings, "process"), ProcessRuntime)
    with pytest.raises(ValueError, match="unknown runtime"):
        backends.runtime_for(settings, "no-such-runtime")
