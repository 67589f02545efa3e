"""The egress rules as text: written and read back the same, ports grouped within iptables' limits."""

from __future__ import annotations

import pytest

from spacehub.sandbox import egress
from spacehub.settings import Settings


def _policy(**overrides: object) -> egress.Policy:
    fields: dict[str, object] = {"resolvers": ("10.255.255.53",), "blocked": frozenset(egress.ALWAYS_BLOCKED),
                                 "internet": True, "ports": frozenset({"8000", "28100:28199"})}
    fields.update(overrides)
    return egress.Policy(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("internet", [True, False])
def test_rules_read_back_as_the_policy_they_were_written_from(internet: bool) -> None:
    pol = _policy(internet=internet)
    lines = egress.out_rules("SPACEHUB-OUT-x", pol) + egress.in_rules("SPACEHUB-IN-x", "172.20.0.1", pol)
    assert egress._parse(lines) == pol


def test_link_local_is_refused_before_the_internet_is_allowed_and_everything_else_is_refused() -> None:
    rules = egress.out_rules("C", _policy())
    assert rules.index("-A C -d 169.254.0.0/16 -j REJECT --reject-with icmp-admin-prohibited") < rules.index(
        "-A C -p tcp -m multiport --dports 80,443 -j RETURN")
    assert rules[-1] == "-A C -j REJECT --reject-with icmp-admin-prohibited"
    # DNS to the resolver (in a refused range) is allowed on port 53 only, and before the refusal of its range.
    assert rules.index("-A C -d 10.255.255.53/32 -p udp -m udp --dport 53 -j RETURN") < rules.index(
        "-A C -d 10.0.0.0/8 -j REJECT --reject-with icmp-admin-prohibited")


def test_host_ports_are_split_into_rules_of_at_most_fifteen_slots() -> None:
    ports = frozenset(str(p) for p in range(9000, 9020)) | {"30000:30010"}
    rules = egress.in_rules("C", "172.20.0.1", _policy(ports=ports))
    groups = [r.split("--dports ")[1].split()[0].split(",") for r in rules if "--dports" in r]
    assert sum(len(g) for g in groups) == len(ports)
    assert all(sum(2 if ":" in p else 1 for p in g) <= 15 for g in groups)


@pytest.mark.parametrize("bad", ["0", "65536", "a-b", "1-2-3", "80;"])
def test_port_settings_must_be_ports(bad: str) -> None:
    with pytest.raises(egress.EgressError):
        egress._port_items([bad])


def test_ports_come_from_the_public_port_the_gateway_ports_and_for_builds_the_package_ports() -> None:
    settings = Settings(port=8123, docker_gateway_ports=["9000-9001", "9100"], docker_package_ports="28300-28301")
    assert egress.app_ports(settings) == {"8123", "9000:9001", "9100"}
    assert egress.build_ports(settings) == {"8123", "9000:9001", "9100", "28300:28301"}


def test_the_hosts_own_networks_are_refused_too() -> None:
    settings = Settings(docker_egress_blocked=["203.0.113.0/24"])
    nets = egress.blocked(settings)
    assert set(egress.ALWAYS_BLOCKED) <= nets and "203.0.113.0/24" in nets
    for net in egress.host_networks():
        assert any(egress.ipaddress.IPv4Network(net).subnet_of(egress.ipaddress.IPv4Network(b)) for b in nets)
