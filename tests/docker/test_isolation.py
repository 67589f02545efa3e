"""Isolation: a space cannot connect to another space, nor to services the host keeps on loopback,
at run time or at build time (spacehub's network has icc off and egress rules; ports are published on 127.0.0.1
only). tests/security tries the whole egress policy."""

from __future__ import annotations

import json
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from dockerkit import Log, docker, run_spec, write_tree

from spacehub_runner.builders.docker import DockerBuilder
from spacehub_runner.plugs import Artifact, BuildPlan, Handle
from spacehub_runner.runtimes.docker import DockerRuntime

pytestmark = pytest.mark.docker

CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()
    print("connected")
except OSError as exc:
    print("blocked", type(exc).__name__)
"""


def _connect_from(handle: Handle, host: str, port: int) -> str:
    return docker("exec", handle.data["container_id"], "python3", "-c", CONNECT, host, str(port)).stdout.strip()


def _ip(handle: Handle) -> str:
    networks = json.loads(docker("inspect", handle.data["container_id"]).stdout)[0]["NetworkSettings"]["Networks"]
    return str(networks["spacehub"]["IPAddress"])


@pytest.fixture(scope="module")
def pair(runtime: DockerRuntime, http_image: Artifact) -> Iterator[tuple[Handle, Handle]]:
    handles = [
        runtime.start(run_spec(space_id, BuildPlan(recipe="docker")), http_image) for space_id in (990_020, 990_021)
    ]
    try:
        for handle in handles:
            runtime.wait_ready(handle, timeout=30)
        yield handles[0], handles[1]
    finally:
        for handle in handles:
            runtime.stop(handle)


@pytest.fixture(scope="module")
def gateway(runtime: DockerRuntime) -> str:
    return runtime.gateway()


@pytest.mark.parametrize("network", ["bridge", "spacehub"])  # build steps run on the first, spaces on the second
def test_icc_is_disabled(network: str) -> None:
    options = json.loads(docker("network", "inspect", network).stdout)[0]["Options"]
    assert options["com.docker.network.bridge.enable_icc"] == "false"


def test_a_container_cannot_connect_to_another(pair: tuple[Handle, Handle]) -> None:
    a, b = pair
    b_ip = _ip(b)
    # Control: b does listen on its bridge address (the host reaches it)...
    socket.create_connection((b_ip, 7860), timeout=3).close()
    # ...and a reaches the outside world's side of the bridge only, not b.
    assert _connect_from(a, b_ip, 7860).startswith("blocked")


def test_a_container_cannot_reach_published_ports_or_host_loopback(pair: tuple[Handle, Handle], gateway: str) -> None:
    a, b = pair
    b_host_port = int(b.target.rpartition(":")[2])
    # b's port is published on the host's 127.0.0.1 only: not through the gateway address.
    assert _connect_from(a, gateway, b_host_port).startswith("blocked")
    assert _connect_from(a, "host.docker.internal", b_host_port).startswith("blocked")
    # Same for any platform service bound to loopback (an internal listener, a loopback-only proxy).
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert _connect_from(a, gateway, listener.getsockname()[1]).startswith("blocked")


def test_a_build_cannot_connect_to_a_running_space(
    builder: DockerBuilder, pair: tuple[Handle, Handle], base_image: str, tmp_path: Path
) -> None:
    _, b = pair
    nonce = secrets.token_hex(4)  # a fresh step every run: never a cached answer
    dockerfile = (
        f"FROM {base_image}\nCOPY probe.py /probe.py\nRUN echo {nonce} && python3 /probe.py {_ip(b)} 7860 > /result\n"
    )
    tree = write_tree(tmp_path, {"Dockerfile": dockerfile, "probe.py": CONNECT})
    artifact = builder.build(BuildPlan(recipe="docker"), tree, Log())
    try:
        assert docker("run", "--rm", artifact.ref, "cat", "/result").stdout.startswith("blocked")
    finally:
        docker("rmi", artifact.ref, check=False)
