"""The process runtime's fork-server, for real: a real virtualenv with gradio, real forks, real apps; no mocks.

A space started through the fork-server must look and behave as if `python app.py` had started it: its own
session and process group (stop and freeze signal the group), the app folder as cwd, exactly the environment
the runtime builds (the fork-server's own is the app-safe one: no platform variable reaches either), values
modules copied from the environment at import refreshed (huggingface_hub's endpoint, gradio's port and temp
folder), exit statuses recorded in the handle's exit file, and nothing shared between two spaces. The server
outlives whoever started it, is found again through its socket, is started again when it has died, and is
stopped once no space uses its environment. With SPACEHUB_FORK_SERVER=false (or when the server refuses) the
app starts plainly.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest
from gradio_client import Client

from spacehub.errors import StartFailed
from spacehub.settings import Settings
from spacehub_runner.builders.process import ProcessBuilder
from spacehub_runner.plugs import Artifact, BuildPlan, Handle, RunSpec
from spacehub_runner.runtimes import forkserver
from spacehub_runner.runtimes.process import ProcessRuntime, proc_info

pytestmark = pytest.mark.timeout(300)

GRADIO_VERSION = importlib.metadata.version("gradio")  # the host's: uv finds it in a warm cache
PLATFORM_SECRET = "SPACEHUB_TEST_SECRET_TOKEN"
SECRET_VALUE = "s3cret-platform-value"

# Dumps what the app sees (its environment, and values modules took from the environment at import), then serves.
APP = """
import json
import os
import sys
from pathlib import Path

import gradio as gr
import gradio.http_server
import gradio.route_utils
import gradio.routes
import huggingface_hub.constants as hub

Path(os.environ["ENV_DUMP_FILE"]).write_text(json.dumps({
    "env": dict(os.environ),
    "hf_endpoint": hub.ENDPOINT,
    "hf_url_template": hub.HUGGINGFACE_CO_URL_TEMPLATE,
    "hf_home": hub.HF_HOME,
    "gradio_port": gradio.http_server.INITIAL_PORT_VALUE,
    "gradio_temp_dirs": [gradio.route_utils.DEFAULT_TEMP_DIR, gradio.routes.DEFAULT_TEMP_DIR],
    "pid": os.getpid(),
    "sid": os.getsid(0),
    "pgid": os.getpgid(0),
    "cwd": os.getcwd(),
    "name": __name__,
    "path0": sys.path[0],
}))
if os.environ.get("EXIT_WITH"):
    sys.exit(int(os.environ["EXIT_WITH"]))
if os.environ.get("CRASH"):
    raise RuntimeError("boom at start")


def greet(name):
    return f"Hello {name} from {os.environ['SPACE_ID']}!"


gr.Interface(greet, "text", "text", api_name="greet").launch()
"""

# Starts a space from a separate process that is then killed, as an RQ work-horse or a whole platform may die.
LAUNCHER = """
import json, sys, time
from pathlib import Path
from spacehub.settings import Settings
from spacehub_runner.plugs import Artifact, BuildPlan, RunSpec
from spacehub_runner.runtimes.process import ProcessRuntime

args = json.loads(sys.argv[1])
spec = RunSpec(space_id=args["space_id"], space_key=args["space_key"], revision="0" * 40,
               plan=BuildPlan.from_json(args["plan"]), env=args["env"])
runtime = ProcessRuntime(Settings(data_dir=Path(args["data_dir"]), public_url=args["public_url"]))
handle = runtime.start(spec, Artifact.from_json(args["artifact"]))
print(json.dumps(handle.to_json()), flush=True)
time.sleep(600)
"""


@dataclass
class Env:
    settings: Settings
    plan: BuildPlan
    artifact: Artifact


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data = tmp_path_factory.mktemp("forkserver-data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UV_CACHE_DIR", os.environ.get("UV_CACHE_DIR") or str(Path.home() / ".cache" / "uv"))
        mp.setenv(PLATFORM_SECRET, SECRET_VALUE)  # in the platform's environment: no app, no server may see it
        settings = Settings(data_dir=data, ready_timeout_s=120, stop_grace_s=5, fork_server=True,
                            public_url="http://hub.example.test:8000")
        src = tmp_path_factory.mktemp("forkserver-src")
        (src / "app.py").write_text(APP)
        plan = BuildPlan(recipe="gradio", sdk_version=GRADIO_VERSION)
        artifact = ProcessBuilder(settings).build(plan, src, lambda line: None)
        env = Env(settings, plan, artifact)
        try:
            yield env
        finally:
            _kill_servers(settings)


def _kill_servers(settings: Settings) -> None:
    for info in forkserver.running(settings).values():
        _kill_group(int(info["pid"]))


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def spec(env: Env, space_id: int, name: str, **variables: str) -> RunSpec:
    dump = env.settings.data_dir / f"dump-{space_id}-{time.time_ns()}.json"
    app_env = {"SYSTEM": "spaces", "SPACE_ID": name, "HF_ENDPOINT": env.settings.base_url,
               "ENV_DUMP_FILE": str(dump), **variables}
    return RunSpec(space_id=space_id, space_key=name, revision="1" * 40, plan=env.plan, env=app_env)


def dump_of(run: RunSpec, timeout: float = 120) -> dict[str, object]:
    path = Path(run.env["ENV_DUMP_FILE"])
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    for _ in range(50):  # written in one go, but maybe not yet completely
        try:
            data: dict[str, object] = json.loads(path.read_text())
            return data
        except json.JSONDecodeError:
            time.sleep(0.05)
    raise AssertionError(f"no dump at {path}")


@pytest.fixture
def runtime(built: Env) -> Iterator[ProcessRuntime]:
    runtime = ProcessRuntime(built.settings)
    yield runtime


@pytest.fixture
def started(built: Env, runtime: ProcessRuntime) -> Iterator[list[Handle]]:
    """Every handle a test starts goes in here; stopped after the test."""
    handles: list[Handle] = []
    yield handles
    for handle in handles:
        runtime.stop(handle)


def start(runtime: ProcessRuntime, built: Env, run: RunSpec, handles: list[Handle], ready: bool = True) -> Handle:
    handle = runtime.start(run, built.artifact)
    handles.append(handle)
    if ready:
        runtime.wait_ready(handle, built.settings.ready_timeout_s, "/")
    return handle


def server_info(built: Env) -> dict[str, object]:
    servers = forkserver.running(built.settings)
    assert list(servers) == [Path(built.artifact.env_path).name]
    return next(iter(servers.values()))


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Signals are delivered asynchronously: give a state change a moment to show in /proc."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def proc_env(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


# -- a forked space --------------------------------------------------------------------------------------


def test_a_space_started_through_the_fork_server_answers(built: Env, runtime: ProcessRuntime,
                                                         started: list[Handle]) -> None:
    handle = start(runtime, built, spec(built, 1, "alice/one"), started)
    assert handle.data["forked"] is True
    assert handle.data["pid"] in server_info(built)["children"]  # the app is the fork-server's child
    response = httpx.get(f"http://{handle.target}/")
    assert response.status_code == 200 and "gradio" in response.text.lower()
    client = Client(f"http://{handle.target}/", verbose=False)
    assert client.predict("Ada", api_name="/greet") == "Hello Ada from alice/one!"
    assert any("Running on local URL" in line for line in runtime.logs(handle))


def test_the_app_sees_exactly_its_own_environment(built: Env, runtime: ProcessRuntime,
                                                  started: list[Handle]) -> None:
    # A variable overriding HF_ENDPOINT (which huggingface_hub reads at import), and a GPU for this space only.
    run = spec(built, 2, "alice/two", HF_ENDPOINT="http://models.example.test:9999", MY_VARIABLE="a value",
               HF_TOKEN="hf_secret_of_the_space")
    run = replace(run, gpu_ids=("1",))
    handle = start(runtime, built, run, started)
    assert handle.data["forked"] is True
    seen = dump_of(run)
    env = seen["env"]
    assert isinstance(env, dict)
    assert not [key for key in env if key.startswith("SPACEHUB_")]
    assert SECRET_VALUE not in json.dumps(seen)
    assert env["SPACE_ID"] == "alice/two"
    assert env["MY_VARIABLE"] == "a value" and env["HF_TOKEN"] == "hf_secret_of_the_space"
    assert env["HF_ENDPOINT"] == "http://models.example.test:9999"
    assert env["CUDA_VISIBLE_DEVICES"] == "1"
    port = str(handle.data["port"])
    assert env["GRADIO_SERVER_PORT"] == env["PORT"] == port
    assert not [key for key in env if key.startswith("FORK_SERVER")]  # nothing of the server's own
    # Exactly what the plain path would get: the runtime's app env, key for key.
    home = built.settings.data_dir / "spaces" / "2"
    assert env["HOME"] == str(home / "home") and env["TMPDIR"] == str(home / "tmp")
    # Values modules copied from the environment at import (in the fork-server) are this space's.
    assert seen["hf_endpoint"] == "http://models.example.test:9999"
    assert seen["hf_url_template"] == "http://models.example.test:9999/{repo_id}/resolve/{revision}/{filename}"
    assert seen["hf_home"] == str(home / "home" / ".cache" / "huggingface")
    assert seen["gradio_port"] == handle.data["port"]
    assert seen["gradio_temp_dirs"] == [str(home / "tmp" / "gradio")] * 2
    # Run as `python app.py` in the app folder.
    assert seen["name"] == "__main__"
    assert seen["cwd"] == seen["path0"] == built.artifact.ref
    # And tools reading /proc see the app's command line and environment, as for a plain start.
    app_pid = int(str(seen["pid"]))
    assert Path(f"/proc/{app_pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")[-1] == b"app.py"
    assert proc_env(app_pid) == env


def test_the_fork_server_itself_has_the_app_safe_environment(built: Env, runtime: ProcessRuntime,
                                                             started: list[Handle]) -> None:
    start(runtime, built, spec(built, 3, "alice/three"), started)
    server_env = proc_env(int(str(server_info(built)["pid"])))
    assert not [key for key in server_env if key.startswith(("SPACEHUB_", "PIP_", "UV_"))]
    assert SECRET_VALUE not in json.dumps(server_env)
    assert "SPACE_ID" not in server_env  # no space's variable either
    assert server_env["HF_ENDPOINT"] == built.settings.base_url
    assert server_env["CUDA_VISIBLE_DEVICES"] == ""


def test_the_app_has_its_own_session_and_group(built: Env, runtime: ProcessRuntime,
                                               started: list[Handle]) -> None:
    run = spec(built, 4, "alice/four")
    handle = start(runtime, built, run, started)
    seen = dump_of(run)
    app = handle.data["pid"]
    assert seen["pid"] == app and handle.data["pgid"] == app
    assert seen["sid"] == seen["pgid"] == app  # it leads its own new session and group
    server_pid = int(str(server_info(built)["pid"]))
    assert os.getsid(server_pid) != app and os.getsid(server_pid) != os.getsid(0)
    # Freeze and thaw signal the whole group.
    runtime.freeze(handle)
    assert eventually(lambda: runtime.is_frozen(handle) and getattr(proc_info(app), "state", "") == "T")
    with pytest.raises(httpx.TimeoutException):
        httpx.get(f"http://{handle.target}/", timeout=1.0)
    runtime.thaw(handle)
    assert eventually(lambda: not runtime.is_frozen(handle))
    assert httpx.get(f"http://{handle.target}/", timeout=30).status_code == 200


def test_stop_and_poll_record_exit_statuses(built: Env, runtime: ProcessRuntime, started: list[Handle]) -> None:
    handle = start(runtime, built, spec(built, 5, "alice/five"), started)
    assert runtime.poll(handle) is None
    runtime.stop(handle)
    assert runtime.poll(handle) == 128 + signal.SIGTERM  # as /bin/sh reports a SIGTERM'd app
    runtime.stop(handle)  # idempotent
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://{handle.target}/")

    exiting = start(runtime, built, spec(built, 6, "alice/six", EXIT_WITH="3"), started, ready=False)
    with pytest.raises(StartFailed, match="exited with code 3"):
        runtime.wait_ready(exiting, 60)
    assert runtime.poll(exiting) == 3

    crashing = start(runtime, built, spec(built, 7, "alice/seven", CRASH="1"), started, ready=False)
    with pytest.raises(StartFailed) as failure:
        runtime.wait_ready(crashing, 60)
    assert runtime.poll(crashing) == 1
    assert "Traceback (most recent call last)" in failure.value.message
    assert "RuntimeError: boom at start" in failure.value.message
    assert "forkserver_main.py" not in failure.value.message  # the traceback starts in the app, as a fresh
    assert "runpy" not in failure.value.message  # interpreter's would


def test_killing_the_app_is_recorded_by_the_fork_server(built: Env, runtime: ProcessRuntime,
                                                   started: list[Handle]) -> None:
    run = spec(built, 8, "alice/eight")
    handle = start(runtime, built, run, started)
    os.kill(int(str(dump_of(run)["pid"])), signal.SIGKILL)
    deadline = time.monotonic() + 30
    while runtime.poll(handle) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert runtime.poll(handle) == 128 + signal.SIGKILL


def test_two_spaces_from_one_fork_server_are_independent(built: Env, runtime: ProcessRuntime,
                                                         started: list[Handle]) -> None:
    first_run, second_run = spec(built, 9, "alice/nine"), spec(built, 10, "bob/ten", ONLY_HERE="yes")
    first = start(runtime, built, first_run, started)
    second = start(runtime, built, second_run, started)
    assert first.data["forked"] and second.data["forked"]
    assert {first.data["pid"], second.data["pid"]} <= set(server_info(built)["children"])
    one, two = dump_of(first_run), dump_of(second_run)
    assert one["pid"] != two["pid"] and one["sid"] != two["sid"]
    env_one, env_two = one["env"], two["env"]
    assert isinstance(env_one, dict) and isinstance(env_two, dict)
    assert "ONLY_HERE" not in env_one and env_two["ONLY_HERE"] == "yes"
    assert Client(f"http://{first.target}/", verbose=False).predict("A", api_name="/greet") == \
        "Hello A from alice/nine!"
    assert Client(f"http://{second.target}/", verbose=False).predict("B", api_name="/greet") == \
        "Hello B from bob/ten!"
    runtime.stop(first)
    assert runtime.poll(first) is not None
    assert runtime.poll(second) is None
    assert httpx.get(f"http://{second.target}/").status_code == 200


# -- who owns the fork-server ----------------------------------------------------------------------------


def test_the_fork_server_outlives_its_starter_and_is_found_again(built: Env, runtime: ProcessRuntime,
                                                                 started: list[Handle]) -> None:
    _kill_servers(built.settings)
    run = spec(built, 11, "alice/eleven")
    args = {"space_id": run.space_id, "space_key": run.space_key, "data_dir": str(built.settings.data_dir),
            "public_url": built.settings.public_url, "plan": built.plan.to_json(),
            "artifact": built.artifact.to_json(), "env": run.env}
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, json.dumps(args)], stdout=subprocess.PIPE,
                                text=True, start_new_session=True)
    assert launcher.stdout is not None
    handle = Handle.from_json(json.loads(launcher.stdout.readline()))
    started.append(handle)
    os.killpg(launcher.pid, signal.SIGKILL)  # the starter dies, and its whole process group with it
    launcher.wait()
    launcher.stdout.close()
    assert handle.data["forked"] is True
    runtime.wait_ready(handle, 120, "/")
    server = server_info(built)
    # Another process (a restarted platform) finds the same server through its socket and forks from it.
    again = start(runtime, built, spec(built, 12, "alice/twelve"), started)
    assert again.data["forked"] is True
    assert server_info(built)["pid"] == server["pid"]
    assert set(server_info(built)["children"]) >= {handle.data["pid"], again.data["pid"]}


def test_a_dead_fork_server_is_started_again_and_its_apps_live_on(built: Env, runtime: ProcessRuntime,
                                                                  started: list[Handle]) -> None:
    before = start(runtime, built, spec(built, 13, "alice/thirteen"), started)
    old = int(str(server_info(built)["pid"]))
    os.kill(old, signal.SIGKILL)
    forkserver.reap_spawned()  # it may be this process's child
    assert eventually(lambda: getattr(proc_info(old), "state", "Z") in ("Z", "X"))
    assert runtime.poll(before) is None  # its own session: the app does not die with the server
    assert httpx.get(f"http://{before.target}/").status_code == 200
    after = start(runtime, built, spec(built, 14, "alice/fourteen"), started)
    assert after.data["forked"] is True
    assert int(str(server_info(built)["pid"])) != old
    runtime.stop(before)
    assert runtime.poll(before) == -1  # killed with SIGKILL, its server could record no status: unknown


def test_a_retiring_fork_server_records_its_apps_exits_before_it_ends(built: Env, runtime: ProcessRuntime,
                                                                      started: list[Handle]) -> None:
    before = start(runtime, built, spec(built, 18, "alice/eighteen"), started)
    old = int(str(server_info(built)["pid"]))
    os.kill(old, signal.SIGTERM)  # (or an `exit` request, or a newer server taking its socket)
    assert eventually(lambda: forkserver.running(built.settings) == {})  # no more starts: its socket is gone
    assert getattr(proc_info(old), "state", "Z") not in ("Z", "X")  # but it stays for its child
    after = start(runtime, built, spec(built, 19, "alice/nineteen"), started)
    assert after.data["forked"] is True and int(str(server_info(built)["pid"])) != old
    runtime.stop(before)
    assert runtime.poll(before) == 128 + signal.SIGTERM  # recorded by the retiring server
    forkserver.reap_spawned()
    assert eventually(lambda: getattr(proc_info(old), "state", "Z") in ("Z", "X"))  # which then ends


def test_an_unused_fork_server_is_collected_but_not_one_with_children(built: Env, runtime: ProcessRuntime,
                                                                      started: list[Handle]) -> None:
    handle = start(runtime, built, spec(built, 15, "alice/fifteen"), started)
    env_hash = Path(built.artifact.env_path).name
    eager = Settings(data_dir=built.settings.data_dir, fork_server_idle_s=0)
    assert forkserver.stop_unused(eager, in_use=set()) == []  # it has a live child
    assert env_hash in forkserver.running(eager)
    runtime.stop(handle)
    deadline = time.monotonic() + 10
    while server_info(built)["children"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert forkserver.stop_unused(eager, in_use={env_hash}) == []  # in use (e.g. by a sleeping space)
    assert forkserver.stop_unused(eager, in_use=set()) == [env_hash]
    deadline = time.monotonic() + 10
    while forkserver.running(eager) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert forkserver.running(eager) == {}
    assert not forkserver.ForkServer(built.settings, Path(built.artifact.env_path), {}).socket_path.exists()


# -- the plain path ------------------------------------------------------------------------------------


def test_turning_the_setting_off_starts_apps_plainly(built: Env, started: list[Handle]) -> None:
    plain = ProcessRuntime(Settings(data_dir=built.settings.data_dir, fork_server=False,
                                    public_url=built.settings.public_url))
    run = spec(built, 16, "alice/sixteen")
    handle = plain.start(run, built.artifact)
    started.append(handle)
    plain.wait_ready(handle, 120, "/")
    assert handle.data["forked"] is False
    assert Path(f"/proc/{handle.data['pid']}/cmdline").read_bytes().startswith(b"/bin/sh\0")
    children = {child for info in forkserver.running(built.settings).values() for child in info["children"]}
    assert handle.data["pid"] not in children
    assert dump_of(run)["sid"] == handle.data["pid"]
    plain.stop(handle)
    assert plain.poll(handle) == 128 + signal.SIGTERM


def test_a_start_the_fork_server_cannot_make_faithful_runs_plainly(built: Env, runtime: ProcessRuntime,
                                                                   started: list[Handle]) -> None:
    # OMP_NUM_THREADS is read by native libraries as they load, which the fork-server has done already.
    run = spec(built, 17, "alice/seventeen", OMP_NUM_THREADS="1")
    handle = start(runtime, built, run, started)
    assert handle.data["forked"] is False
    assert any("starting without the fork-server: OMP_NUM_THREADS" in line for line in runtime.logs(handle))
    assert dump_of(run)["env"]["OMP_NUM_THREADS"] == "1"  # type: ignore[index]
