"""DockerRuntime against a real dockerd: serving, lock-down, limits, labels/adoption, GPUs, storage."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from dockerkit import Built, Log, docker, record, run_spec, write_tree

from spacehub_runner.plugs import Artifact, BuildPlan, Handle
from spacehub_runner.runtimes.docker import DockerRuntime, data_volume_name

pytestmark = pytest.mark.docker

HELLO_ID = 990_001


def _get(target: str, path: str = "/") -> int:
    with urllib.request.urlopen(f"http://{target}{path}", timeout=10) as response:
        return int(response.status)


def _exec(handle: Handle, *cmd: str) -> str:
    return docker("exec", handle.data["container_id"], *cmd).stdout


def _container(handle: Handle) -> dict:
    return json.loads(docker("inspect", handle.data["container_id"]).stdout)[0]


@pytest.fixture(scope="module")
def running(runtime: DockerRuntime, hello: Built) -> Iterator[Handle]:
    spec = run_spec(HELLO_ID, hello.plan, env={"SPACE_ID": "tests/hello", "HF_ENDPOINT": "http://localhost:8000"})
    t0 = time.monotonic()
    handle = runtime.start(spec, hello.artifact)
    runtime.wait_ready(handle, timeout=120)
    record("container start to ready (gradio)", time.monotonic() - t0)
    yield handle
    runtime.stop(handle)


def test_hello_answers_on_loopback_only(running: Handle) -> None:
    host, _, port = running.target.rpartition(":")
    assert host == "127.0.0.1" and int(port) > 0
    assert _get(running.target) == 200
    bindings = _container(running)["HostConfig"]["PortBindings"]
    assert bindings == {"7860/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}


def test_container_is_locked_down(running: Handle) -> None:
    assert _exec(running, "id", "-u").strip() == "1000"
    status = dict(
        line.split(":\t", 1) for line in _exec(running, "cat", "/proc/self/status").splitlines() if ":\t" in line
    )
    assert int(status["CapEff"], 16) == 0
    assert int(status["CapBnd"], 16) == 0
    assert status["NoNewPrivs"].strip() == "1"
    probe = docker("exec", running.data["container_id"], "test", "-e", "/var/run/docker.sock", check=False)
    assert probe.returncode != 0
    host_config = _container(running)["HostConfig"]
    assert host_config["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host_config["SecurityOpt"]
    assert host_config["NetworkMode"] == "spacehub"  # spacehub's own network, egress-policed (tests/security)
    # No host path is mounted: only named volumes, the container's capped scratch disk (spacehub_runner.diskcap),
    # over a read-only root.
    assert all(not bind.startswith("/") for bind in host_config["Binds"] or []) and not host_config["Privileged"]
    assert host_config["ReadonlyRootfs"] is True


def test_limits_come_from_the_hardware_flavor(running: Handle) -> None:
    host_config = _container(running)["HostConfig"]
    # cpu-basic (Hub: 2 vCPU, 16 GB) scaled by the defaults: 1 cpu, 2 GiB, 512 pids, no swap.
    assert host_config["NanoCpus"] == 1_000_000_000
    assert host_config["Memory"] == 2 * 1024**3
    assert host_config["MemorySwap"] == 2 * 1024**3
    assert host_config["PidsLimit"] == 512
    assert host_config["LogConfig"] == {"Type": "json-file", "Config": {"max-file": "3", "max-size": "10m"}}
    assert host_config["RestartPolicy"]["Name"] == "no"


def test_container_environment(running: Handle) -> None:
    env = dict(item.split("=", 1) for item in _container(running)["Config"]["Env"])
    assert env["GRADIO_SERVER_NAME"] == "0.0.0.0"
    assert env["GRADIO_SERVER_PORT"] == "7860"
    assert env["SPACE_ID"] == "tests/hello"
    assert env["HF_ENDPOINT"] == "http://host.docker.internal:8000"  # the platform, as a container reaches it
    assert env["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert "host.docker.internal" in _exec(running, "cat", "/etc/hosts")


def test_handles_are_found_again_from_labels(settings, running: Handle) -> None:
    fresh = DockerRuntime(settings)  # as after a platform restart: nothing but labels to go on
    adopted = fresh.adopt(HELLO_ID)
    assert [h.data["container_id"] for h in adopted] == [running.data["container_id"]]
    assert adopted[0].target == running.target
    assert adopted[0].data["revision"] == running.data["revision"]
    assert running.data["container_id"] in {h.data["container_id"] for h in fresh.list_managed()}
    assert fresh.poll(adopted[0]) is None
    assert any("Running on" in line for line in fresh.logs(adopted[0]))


def test_gpu_spec_asks_for_exactly_its_devices(runtime: DockerRuntime, hello: Built) -> None:
    # No NVIDIA runtime here: create the containers (never start them) and read what Docker was asked.
    gpu = runtime.create(run_spec(990_002, hello.plan, hardware="a10g-small", gpu_ids=("1", "3")), hello.artifact)
    cpu = runtime.create(run_spec(990_003, hello.plan), hello.artifact)
    try:
        gpu_info = json.loads(docker("inspect", gpu.id).stdout)[0]
        cpu_info = json.loads(docker("inspect", cpu.id).stdout)[0]
        requests = gpu_info["HostConfig"]["DeviceRequests"]
        assert len(requests) == 1
        assert requests[0]["DeviceIDs"] == ["1", "3"]
        assert requests[0]["Capabilities"] == [["gpu"]]
        assert requests[0]["Count"] == 0  # never "count=N", which hands every space the same cards
        assert "NVIDIA_VISIBLE_DEVICES=1,3" in gpu_info["Config"]["Env"]
        assert not cpu_info["HostConfig"]["DeviceRequests"]
        assert "NVIDIA_VISIBLE_DEVICES=void" in cpu_info["Config"]["Env"]
    finally:
        for container in (gpu, cpu):
            container.remove(force=True)
            runtime.release_scratch(str(container.name))  # its capped disk goes with it, as `stop` does


def test_stop_is_idempotent_and_poll_sees_it(runtime: DockerRuntime, http_image: Artifact) -> None:
    handle = runtime.start(run_spec(990_004, BuildPlan(recipe="docker")), http_image)
    runtime.wait_ready(handle, timeout=30)
    assert runtime.poll(handle) is None
    t0 = time.monotonic()
    runtime.stop(handle)
    assert time.monotonic() - t0 < 10  # an init process forwards SIGTERM: no wait for the SIGKILL grace
    runtime.stop(handle)
    assert runtime.poll(handle) == -1
    assert runtime.adopt(990_004) == []


def test_exit_code_is_reported(runtime: DockerRuntime, base_image: str, tmp_path: Path, builder) -> None:
    tree = write_tree(tmp_path, {"Dockerfile": f'FROM {base_image}\nCMD ["sh", "-c", "echo bye; exit 3"]\n'})
    artifact = builder.build(BuildPlan(recipe="docker"), tree, Log())
    handle = runtime.start(run_spec(990_005, BuildPlan(recipe="docker")), artifact)
    try:
        deadline = time.monotonic() + 20
        while runtime.poll(handle) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert runtime.poll(handle) == 3
        assert list(runtime.logs(handle)) == ["bye"]
    finally:
        runtime.stop(handle)
        docker("rmi", artifact.ref, check=False)


def test_persistent_storage_survives_a_restart(runtime: DockerRuntime, http_image: Artifact) -> None:
    volume = data_volume_name(990_006)
    spec = run_spec(990_006, BuildPlan(recipe="docker"))
    first = runtime.start(spec, http_image, volume=volume)
    try:
        _exec(first, "sh", "-c", "echo kept > /data/note")  # as uid 1000: the volume is the app's
        runtime.stop(first)
        second = runtime.start(spec, http_image, volume=volume)
        assert _exec(second, "cat", "/data/note").strip() == "kept"
        runtime.stop(second)
    finally:
        runtime.stop(first)
        runtime.remove_volume(volume)
    runtime.remove_volume(volume)  # idempotent
