"""The egress rules come back by themselves: after a reboot or a firewall flush takes them away, the roles that
start containers put them back (at start, and the supervisor every SPACEHUB_DOCKER_SANDBOX_CHECK_S).

Every rule deleted here belongs to a network this test makes and removes (its own bridge, `shtest<tag>`): the
shared default bridge and spacehub's own network are never touched. The real kernel (iptables) throughout.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from spacehub.context import Platform
from spacehub.sandbox import egress
from spacehub.sandbox.keeper import EgressKeeper
from spacehub.settings import Settings
from support.faults import RedisServer, Role, wait_for
from support.sandbox import sandbox_settings
from support.server import SANDBOX_TEST_PORTS, free_port

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]

METADATA_RULE = f"-d 169.254.0.0/16 {egress.REJECT}"


@pytest.fixture
def own(tmp_path: Path, installed: None) -> Iterator[Settings]:
    """An app network of this test's own, policed as `spacehub sandbox install` polices spacehub's."""
    tag = secrets.token_hex(3)
    settings = sandbox_settings(data_dir=tmp_path / "data", docker_network=f"spacehub-test-{tag}",
                                docker_bridge=f"shtest{tag}", docker_sandbox_check_s=1, runtime="docker")
    egress.install(settings, lambda line: None, builds=False)
    try:
        assert egress.problems(settings, builds=False) == []
        yield settings
    finally:
        egress.remove(settings, lambda line: None, builds=False)


def _bridge(settings: Settings) -> egress.Bridge:
    bridge = egress.app_bridge(settings)
    assert bridge is not None
    return bridge


def _iptables(*args: str) -> None:
    subprocess.run(["iptables", "-w", *args], check=True, capture_output=True)


def _delete_metadata_rule(settings: Settings) -> None:
    chain = _bridge(settings).out_chain
    _iptables("-D", chain, *METADATA_RULE.split())
    assert f"-A {chain} {METADATA_RULE}" not in (egress.chain_rules(chain) or [])


def _as_after_a_reboot(settings: Settings) -> None:
    """The kernel forgets every rule of the bridge; dockerd keeps its network."""
    bridge = _bridge(settings)
    _iptables("-D", "DOCKER-USER", "-i", bridge.interface, "-j", bridge.out_chain)
    _iptables("-D", "INPUT", "-i", bridge.interface, "-j", bridge.in_chain)
    for chain in (bridge.out_chain, bridge.in_chain):
        _iptables("-F", chain)
        _iptables("-X", chain)
    assert egress.chain_rules(bridge.out_chain) is None


def _metadata_refused(settings: Settings) -> bool:
    chain = _bridge(settings).out_chain
    return f"-A {chain} {METADATA_RULE}" in (egress.chain_rules(chain) or [])


@pytest.mark.parametrize("damage", [_delete_metadata_rule, _as_after_a_reboot], ids=["a-rule", "every-rule"])
def test_the_keeper_puts_back_what_went(own: Settings, damage) -> None:
    damage(own)
    assert egress.problems(own, builds=False)  # the start-up check would refuse now
    repaired = EgressKeeper(own, builds=False).tend()
    assert repaired, "nothing was repaired"
    assert egress.problems(own, builds=False) == []
    assert _metadata_refused(own)
    assert EgressKeeper(own, builds=False).tend() == []  # in force: nothing to do, nothing rewritten


def test_the_keeper_leaves_another_platforms_choices_alone(own: Settings) -> None:
    """Platforms sharing an engine may choose differently (here: the internet on 80/443): the start-up check of
    one that wants it off names the difference, but its keeper repairs only damage, so it rewrites nothing."""
    offline = own.model_copy(update={"docker_egress_internet": False})
    internet_rule = f"-A {_bridge(own).out_chain} -p tcp -m multiport --dports 80,443 -j RETURN"
    assert any("internet on 80/443 is on, the settings say off" in p for p in egress.problems(offline, builds=False))
    assert EgressKeeper(offline, builds=False).tend() == []
    assert internet_rule in (egress.chain_rules(_bridge(own).out_chain) or [])
    # Damage is still repaired, and the choice the chain held stays.
    _delete_metadata_rule(own)
    assert EgressKeeper(offline, builds=False).tend()
    assert _metadata_refused(own) and internet_rule in (egress.chain_rules(_bridge(own).out_chain) or [])


def test_the_keeper_checks_at_most_once_an_interval(own: Settings) -> None:
    now = [100.0]
    keeper = EgressKeeper(own, builds=False, clock=lambda: now[0])
    assert keeper.tend() == []
    _delete_metadata_rule(own)
    now[0] += own.docker_sandbox_check_s / 2
    assert keeper.tend() == []  # not due yet
    assert not _metadata_refused(own)
    now[0] += own.docker_sandbox_check_s
    assert keeper.tend()
    assert _metadata_refused(own)


def _env(settings: Settings, redis_url: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SPACEHUB_")}
    env.update({
        "SPACEHUB_DATA_DIR": str(settings.data_dir),
        "SPACEHUB_DATABASE_URL": f"sqlite:///{settings.data_dir / 'spacehub.db'}",
        "SPACEHUB_REDIS_URL": redis_url,
        "SPACEHUB_RUNTIME": "docker",
        "SPACEHUB_DOCKER_NETWORK": settings.docker_network,
        "SPACEHUB_DOCKER_BRIDGE": settings.docker_bridge,
        "SPACEHUB_DOCKER_GATEWAY_PORTS": f"{SANDBOX_TEST_PORTS.start}-{SANDBOX_TEST_PORTS.stop - 1}",
        "SPACEHUB_DOCKER_SANDBOX_CHECK_S": "1",
        "SPACEHUB_RECONCILE_INTERVAL_S": "0.5",
    })
    return env


def test_a_worker_puts_the_rules_back_at_start(own: Settings, redis_server: RedisServer) -> None:
    _as_after_a_reboot(own)
    done = subprocess.run([sys.executable, "-m", "spacehub", "worker", "--burst", "--queue",
                           f"empty-{secrets.token_hex(3)}"], env=_env(own, redis_server.url),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "refusing to run the Docker runtime" not in done.stderr
    assert egress.problems(own, builds=False) == []
    assert _metadata_refused(own)


def test_the_supervisor_puts_a_deleted_rule_back_while_it_runs(own: Settings, redis_server: RedisServer,
                                                               tmp_path: Path) -> None:
    Platform.open(Settings(data_dir=own.data_dir, redis_url=redis_server.url,
                           database_url=f"sqlite:///{own.data_dir / 'spacehub.db'}"))  # its schema, as serve makes
    port = free_port()
    supervisor = Role("supervisor", ["supervisor", "--health", f"127.0.0.1:{port}"], _env(own, redis_server.url),
                      tmp_path)
    try:
        def started() -> int | None:
            assert supervisor.process.poll() is None, "the supervisor exited"
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code

        # Its health listener answers once the start-up check is behind it: what follows is the periodic check.
        wait_for("the supervisor started", started, 60)
        assert egress.problems(own, builds=False) == []
        _delete_metadata_rule(own)
        wait_for("the deleted rule back in the kernel", lambda: _metadata_refused(own) or None, 60)
        assert egress.problems(own, builds=False) == []
        assert supervisor.process.poll() is None
    finally:
        supervisor.close()
    output = supervisor.log.read_text()
    assert "egress rules were missing or altered and are back in force" in output
