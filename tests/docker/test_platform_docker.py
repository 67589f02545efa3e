"""The docker runtime through the whole platform (a real `spacehub serve`, SPACEHUB_RUNTIME=docker): the Docker
SDK and static examples served through the proxy, and a probe space (Docker SDK, a secret, a variable,
persistent storage, the cpu-upgrade flavor) that looks around from inside, at build time and at run time.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dockerkit import (
    docker,
    inspect_existing,
    instance_containers,
    instance_label,
    remove_instance,
    run_spec,
    write_tree,
)

from spacehub.dockerhost import bridge_gateway
from support.server import EXAMPLES, Server

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

# Run inside the probe space (at build time and at run time): what it can reach, what it can see.
PROBE = r"""
import json, os, socket, sys, urllib.request

checks = json.loads(sys.argv[1])
out = {}
for name, host, port in checks.get("tcp", []):
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
        out[name] = "connected"
    except OSError as exc:
        out[name] = "blocked " + type(exc).__name__
for name, url in checks.get("http", []):
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            out[name] = response.status
    except Exception as exc:
        out[name] = "failed " + repr(exc)
for name, path in checks.get("paths", []):
    out[name] = os.path.exists(path)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sdk_image: str) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("platform-docker") / "data"
    srv = Server(data_dir, runtime="docker")
    srv.start()
    yield srv
    srv.stop()
    srv.kill_apps()  # a static space is served by a process, which outlives serve like any app
    remove_instance(data_dir)


def _containers(server: Server, repo_id: str) -> list[dict[str, Any]]:
    found = inspect_existing(instance_containers(server.data_dir))
    return [c for c in found if c["Config"]["Labels"].get("spacehub.space-key") == repo_id]


def _container(server: Server, repo_id: str) -> dict[str, Any]:
    """The space's one container, once a redeploy's old container has been drained and removed."""
    deadline = time.monotonic() + 60
    found = _containers(server, repo_id)
    while len(found) != 1 and time.monotonic() < deadline:
        time.sleep(0.5)
        found = _containers(server, repo_id)
    (container,) = found
    return container


@pytest.fixture(scope="module")
def fastapi(server: Server) -> dict[str, Any]:
    result = server.cli("push", str(EXAMPLES / "docker-fastapi"), "admin/docker-fastapi")
    assert "Running: " in result.stdout
    return _container(server, "admin/docker-fastapi")


def test_the_docker_sdk_example_serves_through_the_proxy(server: Server, fastapi: dict[str, Any]) -> None:
    page = server.space_get("admin-docker-fastapi")
    assert page.status_code == 200 and "Hello from FastAPI" in page.text and "admin/docker-fastapi" in page.text
    assert server.space_get("admin-docker-fastapi", "/add", params={"a": 2, "b": 3}).json()["sum"] == 5
    # app_port 8080 (from the README) is the container port published, on loopback only.
    assert fastapi["HostConfig"]["PortBindings"] == {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}


def test_the_static_example_serves_through_the_proxy_without_a_container(server: Server) -> None:
    server.cli("push", str(EXAMPLES / "static"), "admin/static")
    page = server.space_get("admin-static")
    assert page.status_code == 200 and "Hello from a static space" in page.text
    assert "#c2410c" in server.space_get("admin-static", "/style.css").text
    assert _containers(server, "admin/static") == []


# -- the probe space ------------------------------------------------------------------------------------------

TOKEN = "hf_" + secrets.token_hex(16)


def _platform_tcp_ports(root_pid: int) -> set[int]:
    """TCP ports the platform's own processes (serve and its children) listen on."""
    pids, frontier = {root_pid}, [root_pid]
    while frontier:
        parent = frontier.pop()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) not in pids:
                try:
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError):
                    continue
                if ppid == parent:
                    pids.add(int(entry.name))
                    frontier.append(int(entry.name))
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:["):
                    inodes.add(int(link[8:-1]))
        except OSError:
            continue
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[9]) in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _checks(server: Server, fastapi: dict[str, Any], network: str) -> dict[str, Any]:
    """What the probe tries: every TCP port of the platform (at the gateway of the network it runs on: build
    steps run on the engine's default bridge, spaces on spacehub's own) and another space's container,
    HF_ENDPOINT, and the paths of the platform's unix sockets and database."""
    gateway = bridge_gateway(network=network)
    assert gateway is not None
    assert server.process is not None
    ports = _platform_tcp_ports(server.process.pid)
    assert server.port in ports
    other_ip = fastapi["NetworkSettings"]["Networks"]["spacehub"]["IPAddress"]
    other_host_port = fastapi["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
    run = server.data_dir / "run"
    return {
        "tcp": [[f"platform:{port}", gateway, port] for port in sorted(ports)]
        + [["other space", other_ip, 8080], ["other space, published", gateway, other_host_port]],
        "http": [["hf_endpoint", f"http://host.docker.internal:{server.port}/health"]],
        "paths": [["api socket", str(run / "api.sock")], ["redis socket", str(run / "redis.sock")],
                  ["redis url", str(run / "redis.url")], ["database", str(server.data_dir / "spacehub.db")],
                  ["docker socket", "/var/run/docker.sock"]],
    }


@pytest.fixture(scope="module")
def checks(server: Server, fastapi: dict[str, Any]) -> dict[str, Any]:
    """The build step's checks (baked into the probe image)."""
    return _checks(server, fastapi, "bridge")


def _probe_tree(root: Path, checks: dict[str, Any], marker: str) -> Path:
    dockerfile = f"""\
ARG SPACEHUB_BASE_IMAGE
FROM ${{SPACEHUB_BASE_IMAGE}}
ARG GREETING
COPY probe.py /opt/probe.py
RUN echo {secrets.token_hex(4)} && echo "$GREETING" > /opt/greeting
RUN --mount=type=secret,id=API_TOKEN,mode=0444,required=true \\
    sha256sum /run/secrets/API_TOKEN | cut -d' ' -f1 > /opt/secret.sha256
# A careless step that prints the secret: the platform masks it in the log it keeps.
RUN --mount=type=secret,id=API_TOKEN echo "token is $(cat /run/secrets/API_TOKEN)"
RUN python3 /opt/probe.py '{json.dumps(checks)}' > /opt/build-probe.json
WORKDIR /tmp
CMD ["python3", "-m", "http.server", "7860"]
"""
    readme = "---\ntitle: Probe\nsdk: docker\napp_port: 7860\n---\n"
    return write_tree(root, {"Dockerfile": dockerfile, "probe.py": PROBE, "README.md": readme, "marker": marker})


@pytest.fixture(scope="module")
def probe(server: Server, checks: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    response = server.api.post("/api/repos/create", json={
        "name": "probe", "organization": "admin", "type": "space", "sdk": "docker", "hardware": "cpu-upgrade",
        "storageTier": "small", "secrets": [{"key": "API_TOKEN", "value": TOKEN}],
        "variables": [{"key": "GREETING", "value": "hi there"}],
    })
    assert response.status_code == 200, response.text
    tree = _probe_tree(tmp_path_factory.mktemp("probe"), checks, "one")
    result = server.cli("push", str(tree), "admin/probe")
    assert "Running: " in result.stdout
    return _container(server, "admin/probe")


def _exec(container: dict[str, Any], *cmd: str) -> str:
    return docker("exec", container["Id"], *cmd).stdout


def test_inside_a_running_space(probe: dict[str, Any]) -> None:
    assert _exec(probe, "id", "-u").strip() == "1000"
    status = dict(line.split(":\t", 1) for line in _exec(probe, "cat", "/proc/self/status").splitlines()
                  if ":\t" in line)
    assert int(status["CapEff"], 16) == 0
    assert status["NoNewPrivs"].strip() == "1"
    assert docker("exec", probe["Id"], "test", "-e", "/var/run/docker.sock", check=False).returncode != 0


def _expect_isolated(results: dict[str, Any], server: Server) -> None:
    assert results["hf_endpoint"] == 200  # the public port answers, as host.docker.internal
    assert results[f"platform:{server.port}"] == "connected"
    others = {name: value for name, value in results.items() if name.startswith("platform:")
              and name != f"platform:{server.port}"}
    assert all(value.startswith("blocked") for value in others.values()), others
    assert results["other space"].startswith("blocked")
    assert results["other space, published"].startswith("blocked")
    for path in ("api socket", "redis socket", "redis url", "database", "docker socket"):
        assert results[path] is False, path


def test_a_running_space_reaches_only_the_public_port(server: Server, probe: dict[str, Any],
                                                       fastapi: dict[str, Any]) -> None:
    checks = _checks(server, fastapi, "spacehub")
    results = json.loads(_exec(probe, "python3", "/opt/probe.py", json.dumps(checks)))
    _expect_isolated(results, server)
    env = dict(item.split("=", 1) for item in probe["Config"]["Env"])
    assert env["HF_ENDPOINT"] == f"http://host.docker.internal:{server.port}"


def test_a_build_step_reaches_only_the_public_port(server: Server, probe: dict[str, Any]) -> None:
    results = json.loads(_exec(probe, "cat", "/opt/build-probe.json"))
    _expect_isolated(results, server)


def test_variables_are_build_args_and_secrets_are_build_secret_mounts(server: Server, probe: dict[str, Any]) -> None:
    assert _exec(probe, "cat", "/opt/greeting").strip() == "hi there"
    assert _exec(probe, "cat", "/opt/secret.sha256").strip() == hashlib.sha256(TOKEN.encode()).hexdigest()
    image = probe["Config"]["Image"]
    history = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", image).stdout
    image_config = docker("image", "inspect", image).stdout
    build_log = server.cli("logs", "admin/probe", "--build").stdout
    assert "token is *****" in build_log
    for where in (history, image_config, build_log):
        assert TOKEN not in where
    assert docker("exec", probe["Id"], "test", "-e", "/run/secrets/API_TOKEN", check=False).returncode != 0


def test_secrets_and_variables_are_env_vars_at_run_time(probe: dict[str, Any]) -> None:
    env = dict(item.split("=", 1) for item in probe["Config"]["Env"])
    assert env["API_TOKEN"] == TOKEN
    assert env["GREETING"] == "hi there"


def test_limits_come_from_the_flavor(probe: dict[str, Any]) -> None:
    host_config = probe["HostConfig"]
    # cpu-upgrade is 8 vCPU / 32 GB on the Hub; scaled by the default 0.5 / 0.125, CPUs capped at the host's.
    assert host_config["NanoCpus"] == int(min(8 * 0.5, os.cpu_count() or 1) * 1e9)
    assert host_config["Memory"] == host_config["MemorySwap"] == 4 * 1024**3
    assert host_config["PidsLimit"] == 512
    assert host_config["CapDrop"] == ["ALL"] and "no-new-privileges" in host_config["SecurityOpt"]


def _wait_new_container(server: Server, repo_id: str, old_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = [c for c in _containers(server, repo_id) if c["State"]["Running"]]
        if len(running) == 1 and running[0]["Id"] != old_id:
            runtime = server.api.get(f"/api/spaces/{repo_id}/runtime").json()
            if runtime["stage"] == "RUNNING":
                return running[0]
        time.sleep(0.5)
    raise AssertionError(f"{repo_id} did not come back in a new container")


def test_a_factory_rebuild_builds_every_layer_again(server: Server, probe: dict[str, Any]) -> None:
    before = _container(server, "admin/probe")
    response = server.api.post("/api/spaces/admin/probe/restart", params={"factory": "true"})
    assert response.status_code == 200, response.text
    _wait_new_container(server, "admin/probe", before["Id"])
    build_log = server.cli("logs", "admin/probe", "--build").stdout
    assert "(factory rebuild)" in build_log
    run_steps = {line.split()[0] for line in build_log.splitlines() if line.startswith("#") and "] RUN " in line}
    assert len(run_steps) >= 4, build_log
    cached = [line for line in build_log.splitlines() if line.endswith(" CACHED") and line.split()[0] in run_steps]
    assert not cached, build_log
    assert TOKEN not in build_log


def test_data_survives_a_restart_and_a_rebuild_and_goes_with_the_space(
    server: Server, probe: dict[str, Any], checks: dict[str, Any], tmp_path: Path
) -> None:
    probe = _container(server, "admin/probe")  # the one running now
    mounts = [m for m in probe["Mounts"] if m["Destination"] == "/data"]
    assert len(mounts) == 1 and mounts[0]["Type"] == "volume"
    volume = mounts[0]["Name"]
    _exec(probe, "sh", "-c", "echo kept > /data/note")  # as uid 1000: the volume is the app's

    response = server.api.post("/api/spaces/admin/probe/restart")
    assert response.status_code == 200, response.text
    restarted = _wait_new_container(server, "admin/probe", probe["Id"])
    assert _exec(restarted, "cat", "/data/note").strip() == "kept"

    server.cli("push", str(_probe_tree(tmp_path, checks, "two")), "admin/probe")
    rebuilt = _container(server, "admin/probe")
    assert rebuilt["Config"]["Image"] != probe["Config"]["Image"]
    assert _exec(rebuilt, "cat", "/data/note").strip() == "kept"

    response = server.api.request("DELETE", "/api/repos/delete",
                                  json={"name": "probe", "organization": "admin", "type": "space"})
    assert response.status_code == 200
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and volume in _volumes(server):
        time.sleep(0.5)
    assert volume not in _volumes(server)
    assert _containers(server, "admin/probe") == []


def _volumes(server: Server) -> list[str]:
    return docker("volume", "ls", "-q", "--filter", f"label={instance_label(server.data_dir)}").stdout.split()


def test_after_a_restart_the_supervisor_adopts_lost_containers_and_removes_orphans(
    server: Server, fastapi: dict[str, Any]
) -> None:
    """While the platform is down: SQL loses track of a running container (as when a deploy dies between
    starting it and recording it), and containers of a deleted space and of a superseded revision appear."""
    from spacehub.settings import Settings
    from spacehub_runner.plugs import Artifact, BuildPlan
    from spacehub_runner.runtimes.docker import DockerRuntime

    server.stop()
    with sqlite3.connect(server.data_dir / "spacehub.db") as db:
        db.execute("update spaces set handle = null where owner = 'admin' and name = 'docker-fastapi'")
        space_id = db.execute("select id from spaces where name = 'docker-fastapi'").fetchone()[0]
        db.execute("delete from deployments where space_id = ?", (space_id,))  # its start's record is lost too
    runtime = DockerRuntime(Settings(data_dir=server.data_dir))  # this platform's labels
    image = Artifact(kind="docker-image", key="orphans", ref=fastapi["Config"]["Image"])
    plan = BuildPlan(recipe="docker", app_port=8080)
    orphans = [
        runtime.start(run_spec(987_654, plan), image).data["container_id"],  # a space that does not exist
        runtime.start(run_spec(space_id, plan, revision="0" * 40), image).data["container_id"],  # superseded
    ]
    server.start()

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and set(orphans) & set(instance_containers(server.data_dir)):
        time.sleep(0.5)
    assert not set(orphans) & set(instance_containers(server.data_dir))
    # The lost container was adopted, not replaced: the same one serves, and it is the only one.
    assert [c["Id"] for c in _containers(server, "admin/docker-fastapi")] == [fastapi["Id"]]
    assert server.api.get("/api/spaces/admin/docker-fastapi/runtime").json()["stage"] == "RUNNING"
    assert server.space_get("admin-docker-fastapi", "/healthz").json() == {"status": "ok"}
    # ... and recorded: a deployment serving it, as for any start.
    with sqlite3.connect(server.data_dir / "spacehub.db") as db:
        serving = db.execute("select handle from deployments where space_id = ? and outcome = 'serving'",
                             (space_id,)).fetchall()
    assert [json.loads(handle)["data"]["container_id"] for (handle,) in serving] == [fastapi["Id"]]


def test_a_newer_push_stops_a_running_build(server: Server, tmp_path: Path) -> None:
    # One build worker here: unless the first build is stopped, the second waits out its 15 minutes.
    base = "ARG SPACEHUB_BASE_IMAGE\nFROM ${SPACEHUB_BASE_IMAGE}\n"
    slow = write_tree(tmp_path / "slow", {
        "README.md": "---\nsdk: docker\napp_port: 7860\n---\n",
        "Dockerfile": base + f"RUN echo {secrets.token_hex(4)} && "
                             "for i in $(seq 900); do echo tick $i; sleep 1; done\n",
    })
    server.cli("push", str(slow), "admin/slow", "--no-follow")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and "tick 3" not in server.cli("logs", "admin/slow", "--build").stdout:
        time.sleep(0.5)
    assert "tick 3" in server.cli("logs", "admin/slow", "--build").stdout
    quick = write_tree(tmp_path / "quick", {
        "README.md": "---\nsdk: docker\napp_port: 7860\n---\n",
        "Dockerfile": base + 'WORKDIR /tmp\nCMD ["python3", "-m", "http.server", "7860"]\n',
    })
    result = server.cli("push", str(quick), "admin/slow")
    assert "Running: " in result.stdout
    assert "tick" not in server.cli("logs", "admin/slow", "--build").stdout  # the new build's log is its own
    assert server.space_get("admin-slow").status_code == 200
