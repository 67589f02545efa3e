"""Egress: what an app container and a build step can reach, tried from inside them by the probe.

Reachable: the platform's public port on the bridge gateway (a listener at a port of the test range, which the
sandbox allows as the test platforms' public ports), and the "public internet" on 80/443 (an address of a
namespace the test owns). Unreachable: the host's other ports (on the gateways, on its own address, bound to
every address), a private address, 169.254.169.254, the public address on other ports, other containers.
Every refusal has its control: the same listener answers the host, so "blocked" is the kernel's doing.
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from probekit import SPACE_IDS, build_probe, build_report

from spacehub.sandbox import egress
from spacehub.settings import Settings
from spacehub_runner.builders.docker import DockerBuilder
from spacehub_runner.pkgsources import port_range
from spacehub_runner.plugs import Artifact, BuildPlan, Handle, RunSpec
from spacehub_runner.runtimes.docker import DockerRuntime
from support.sandbox import DNS_ANSWER, METADATA, Targets, host_address, host_listener, sandbox_settings, targets
from support.server import SANDBOX_TEST_PORTS, Server

pytestmark = pytest.mark.docker


@dataclass
class Host:
    app_gateway: str
    build_gateway: str
    address: str  # the host's own, non-loopback address
    public_port: int  # listening on both gateways, as the platform's bridge listeners do
    package_port: int  # on the build gateway, as the build-time package server does
    forbidden: dict[str, int]  # listener address -> port no rule allows


@pytest.fixture(scope="module")
def ns() -> Iterator[Targets]:
    with targets() as found:
        yield found


@pytest.fixture(scope="module")
def host(runtime: DockerRuntime) -> Iterator[Host]:
    app_gw, build_gw, address = runtime.gateway(), egress.build_bridge().gateway, host_address()
    with ExitStack() as stack:
        public = stack.enter_context(host_listener(app_gw, SANDBOX_TEST_PORTS))
        stack.enter_context(host_listener(build_gw, range(public, public + 1)))
        package = stack.enter_context(host_listener(build_gw, port_range(sandbox_settings().docker_package_ports)))
        forbidden = {a: stack.enter_context(host_listener(a)) for a in (app_gw, build_gw, address, "0.0.0.0")}
        for listener, port in [(app_gw, public), (build_gw, public), (build_gw, package), *forbidden.items()]:
            # Control: each listener answers the host itself.
            socket.create_connection(("127.0.0.1" if listener == "0.0.0.0" else listener, port), timeout=3).close()
        yield Host(app_gw, build_gw, address, public, package, forbidden)


@pytest.fixture(scope="module")
def probe(builder: DockerBuilder, base_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Artifact]:
    artifact = build_probe(builder, base_image, tmp_path_factory.mktemp("probe"))
    yield artifact
    subprocess.run(["docker", "rmi", artifact.ref], capture_output=True)


def _start(runtime: DockerRuntime, artifact: Artifact, space_id: int) -> Handle:
    spec = RunSpec(space_id=space_id, space_key=f"tests/probe-{space_id}", revision=secrets.token_hex(20),
                   plan=BuildPlan(recipe="docker"), env={})
    handle = runtime.start(spec, artifact)
    runtime.wait_ready(handle, timeout=60)
    return handle


@pytest.fixture(scope="module")
def pair(runtime: DockerRuntime, probe: Artifact) -> Iterator[tuple[Handle, Handle]]:
    handles: list[Handle] = []
    try:
        for space_id in (SPACE_IDS[0], SPACE_IDS[1]):
            handles.append(_start(runtime, probe, space_id))
        yield handles[0], handles[1]
    finally:
        for handle in handles:
            runtime.stop(handle)


def reach(handle: Handle, *targets: str) -> dict[str, str]:
    """What the probe app inside the container says about each target (it connects; we ask over HTTP)."""
    query = urllib.parse.urlencode([("t", t) for t in targets])
    with urllib.request.urlopen(f"http://{handle.target}/connect?{query}", timeout=60) as response:
        return dict(json.load(response))


def container_ip(handle: Handle, network: str) -> str:
    out = subprocess.run(["docker", "inspect", handle.data["container_id"]], capture_output=True, text=True)
    return str(json.loads(out.stdout)[0]["NetworkSettings"]["Networks"][network]["IPAddress"])


def opened(results: dict[str, str]) -> set[str]:
    return {target for target, outcome in results.items() if outcome.startswith("open")}


def test_apps_run_on_spacehubs_own_network(pair: tuple[Handle, Handle], settings: Settings) -> None:
    info = json.loads(subprocess.run(["docker", "inspect", pair[0].data["container_id"]], capture_output=True,
                                     text=True).stdout)[0]
    assert list(info["NetworkSettings"]["Networks"]) == [settings.docker_network]
    assert egress.problems(settings) == []


def test_an_app_reaches_the_public_port_and_nothing_else_of_the_host(pair: tuple[Handle, Handle],
                                                                      host: Host) -> None:
    a, _ = pair
    allowed = f"{host.app_gateway}:{host.public_port}"
    refused = [f"{address}:{port}" for address, port in host.forbidden.items() if address != "0.0.0.0"]
    everywhere = host.forbidden["0.0.0.0"]  # a service bound to every address of the host
    refused += [f"{host.app_gateway}:{everywhere}", f"{host.address}:{everywhere}",
                f"{host.build_gateway}:{host.public_port}", f"{host.build_gateway}:{host.package_port}"]
    results = reach(a, allowed, *refused)
    assert opened(results) == {allowed}, results


def test_an_app_reaches_the_internet_on_80_and_443_only(pair: tuple[Handle, Handle], ns: Targets) -> None:
    a, _ = pair
    results = reach(a, f"{ns.public}:80", f"{ns.public}:443", f"{ns.public}:8080")
    assert opened(results) == {f"{ns.public}:80", f"{ns.public}:443"}, results
    assert results[f"{ns.public}:80"] == f"open {ns.netns}:80"  # it was our namespace that answered


def test_an_app_cannot_reach_private_ranges_or_the_metadata_address(pair: tuple[Handle, Handle],
                                                                     ns: Targets) -> None:
    a, _ = pair
    # Control: from the host, both answer (the host is not boxed in).
    for address in (ns.private, METADATA):
        with socket.create_connection((address, 80), timeout=3) as sock:
            assert sock.recv(64).decode().startswith(ns.netns)
    results = reach(a, *(f"{address}:{port}" for address in (ns.private, METADATA) for port in (80, 443)))
    assert opened(results) == set(), results


def test_an_app_cannot_reach_another_container(pair: tuple[Handle, Handle], settings: Settings,
                                               host: Host) -> None:
    a, b = pair
    b_ip = container_ip(b, settings.docker_network)
    socket.create_connection((b_ip, 7860), timeout=3).close()  # control: b listens there (the host reaches it)
    b_published = int(b.target.rpartition(":")[2])
    results = reach(a, f"{b_ip}:7860", f"{host.app_gateway}:{b_published}", f"{host.address}:{b_published}")
    assert opened(results) == set(), results


def test_a_build_step_has_the_same_policy(builder: DockerBuilder, base_image: str, tmp_path: Path,
                                          pair: tuple[Handle, Handle], ns: Targets, host: Host,
                                          settings: Settings) -> None:
    _, b = pair
    allowed = {f"{host.build_gateway}:{host.public_port}", f"{host.build_gateway}:{host.package_port}",
               f"{ns.public}:80", f"{ns.public}:443"}
    everywhere = host.forbidden["0.0.0.0"]
    refused = {
        f"{host.build_gateway}:{host.forbidden[host.build_gateway]}", f"{host.build_gateway}:{everywhere}",
        f"{host.address}:{host.forbidden[host.address]}", f"{host.address}:{everywhere}",
        f"{host.app_gateway}:{host.public_port}",
        f"{ns.public}:8080", f"{ns.private}:80", f"{METADATA}:80",
        f"{container_ip(b, settings.docker_network)}:7860",  # a running space
    }
    artifact = build_probe(builder, base_image, tmp_path, sorted(allowed | refused))
    try:
        results = build_report(artifact)["connect"]
    finally:
        subprocess.run(["docker", "rmi", artifact.ref], capture_output=True)
    assert opened(results) == allowed, results


def test_the_kernel_refuses_link_local_before_anything_is_allowed(settings: Settings, runtime: DockerRuntime) -> None:
    """The rule itself, as the kernel holds it: 169.254.0.0/16 (cloud metadata) is refused on both bridges before
    the rule that lets 80/443 out, and the host's resolvers get port 53 only."""
    for bridge in (egress.app_bridge(settings), egress.build_bridge()):
        assert bridge is not None
        rules = egress.chain_rules(bridge.out_chain)
        assert rules is not None
        link_local = rules.index(f"-A {bridge.out_chain} -d 169.254.0.0/16 -j REJECT --reject-with "
                                 "icmp-admin-prohibited")
        internet = rules.index(f"-A {bridge.out_chain} -p tcp -m multiport --dports 80,443 -j RETURN")
        assert link_local < internet
        assert rules[-1] == f"-A {bridge.out_chain} -j REJECT --reject-with icmp-admin-prohibited"
        assert all(" --dport 53 " in r for r in rules if f" -d {egress.resolvers(settings)[0]}/32" in r)


@pytest.fixture
def offline_network(settings: Settings) -> Iterator[Settings]:
    """A second app network of this test's own whose operator turned the internet off."""
    tag = secrets.token_hex(3)
    offline = sandbox_settings(data_dir=settings.data_dir / f"offline-{tag}", docker_network=f"spacehub-test-{tag}",
                            docker_bridge=f"shtest{tag}", docker_egress_internet=False)
    egress.install(offline, lambda line: None, builds=False)
    try:
        yield offline
    finally:
        egress.remove(offline, lambda line: None, builds=False)


def test_the_internet_can_be_turned_off(offline_network: Settings, probe: Artifact, ns: Targets) -> None:
    assert egress.problems(offline_network, builds=False) == []
    runtime = DockerRuntime(offline_network)
    handle = _start(runtime, probe, SPACE_IDS[2])
    try:
        results = reach(handle, f"{ns.public}:80", f"{ns.public}:443")
        assert opened(results) == set(), results
    finally:
        runtime.stop(handle)


def test_the_check_names_what_differs(settings: Settings) -> None:
    """The start-up check compares the kernel's rules with the settings (read only: nothing is changed)."""
    assert egress.problems(settings) == []
    off = sandbox_settings(docker_egress_internet=False)
    assert any("internet on 80/443 is on, the settings say off" in p for p in egress.problems(off))
    elsewhere = sandbox_settings(port=29999)  # outside the installed ports
    assert any("does not allow port(s) 29999" in p for p in egress.problems(elsewhere))


def test_serve_refuses_the_docker_runtime_without_its_sandbox(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", runtime="docker", docker_network=f"spacehub-absent-{secrets.token_hex(3)}")
    with pytest.raises(RuntimeError) as refused:
        server.start()
    assert "refusing to run the Docker runtime" in str(refused.value)
    assert "does not exist" in str(refused.value)
    assert "spacehub sandbox install" in str(refused.value)


RESOLVE = """
import socket, sys
try:
    print(socket.gethostbyname(sys.argv[1]))
except OSError as exc:
    print("failed", exc)
"""


@pytest.fixture
def own_resolver_network(settings: Settings, ns: Targets) -> Iterator[Settings]:
    """A second app network whose DNS allowance is the namespace's resolver (a private address)."""
    tag = secrets.token_hex(3)
    net = sandbox_settings(data_dir=settings.data_dir / f"dns-{tag}", docker_network=f"spacehub-test-{tag}",
                           docker_bridge=f"shtest{tag}", docker_egress_dns=[ns.private])
    egress.install(net, lambda line: None, builds=False)
    try:
        yield net
    finally:
        egress.remove(net, lambda line: None, builds=False)


def test_dns_works_through_the_resolver_it_is_allowed_and_no_other(own_resolver_network: Settings, ns: Targets,
                                                                    base_image: str) -> None:
    """Docker's embedded DNS forwards from the container's own namespace: the rules let port 53 through to the
    allowed resolver only, though it sits in a refused range."""

    def resolve(network: str) -> str:
        out = subprocess.run(["docker", "run", "--rm", "--network", network, "--dns", ns.private, "--user",
                              "1000:1000", "--cap-drop", "ALL", base_image, "python3", "-c", RESOLVE,
                              "probe.spacehub.test"], capture_output=True, text=True, timeout=120)
        return out.stdout.strip() or out.stderr.strip()

    assert resolve(own_resolver_network.docker_network) == DNS_ANSWER
    # On the platform's network the namespace's address is just another private one: refused, port 53 too.
    assert resolve("spacehub").startswith("failed")
