"""Egress policy for app containers and build steps: real kernel rules (iptables) on bridges spacehub owns.

Why a bridge plus iptables rules rather than an internal network plus an egress proxy: Docker's embedded DNS,
package downloads and the platform's public port all keep working unchanged (no proxy settings to teach every
tool in every image), and the kernel drops what is not allowed whatever the program inside does.

Two bridges are policed:
  - the app network (`SPACEHUB_DOCKER_NETWORK`, default `spacehub`, bridge `spacehub0`): spacehub's own,
    created here with inter-container traffic off; every space container runs on it;
  - the engine's default bridge (`docker0`): dockerd's BuildKit runs every build step there and cannot be
    pointed at another network, so the same policy applies to it (and so to any container on it).

For packets a container sends through the host (iptables DOCKER-USER, chain SPACEHUB-OUT-<bridge>):
  replies to connections made to it pass; DNS (udp/tcp 53) to the host's resolvers only (dockerd 20.10's
  embedded DNS forwards from the container's own namespace, and BuildKit steps query the host's resolvers
  directly); every private, loopback, link-local (169.254.0.0/16: cloud metadata), shared, multicast or
  reserved range and every network the host is directly attached to is refused; the public internet on tcp
  80/443 when `SPACEHUB_DOCKER_EGRESS_INTERNET` allows it; nothing else.
For packets to the host itself (INPUT, chain SPACEHUB-IN-<bridge>): the bridge's gateway address on the
  platform's public port (and `SPACEHUB_DOCKER_GATEWAY_PORTS`; build steps also the package server's ports);
  nothing else of the host, on any of its addresses.
IPv6 from either bridge is dropped outright (containers get no IPv6 address; this is the belt to those braces).

The rules live in the kernel, so a reboot (or anything that flushes the firewall) takes them away; dockerd keeps
its networks. `reassert` puts back what is gone or damaged (a chain, a rule, a jump) on the bridges this platform
polices; every role that starts containers calls it at start and the supervisor every
`SPACEHUB_SANDBOX_CHECK_INTERVAL_S` (spacehub.sandbox.keeper). It repairs, it does not re-decide: a policy that
differs from the settings (ports, DNS, internet) stays a refusal at start until `spacehub sandbox install` is run,
so two platforms sharing one engine never rewrite each other's choices back and forth.

Ports and refused ranges only ever grow on a re-install (platforms sharing one engine keep theirs); the check
asks that this platform's ports and ranges are among them, and that the rest is exactly as it would be written.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spacehub.settings import Settings

BUILD_NETWORK = "bridge"  # dockerd's BuildKit runs build steps on the default bridge, always
V6_CHAIN = "SPACEHUB-V6"
INTERNET_PORTS = "80,443"
REJECT = "-j REJECT --reject-with icmp-admin-prohibited"
# Never a container's business: RFC 1918, loopback, link-local (metadata), "this network", shared address space
# (carrier-grade NAT, also used for cloud services), IETF protocol assignments, benchmarking, multicast and
# reserved. Documentation ranges are left alone: some machines reach their package mirrors there.
ALWAYS_BLOCKED = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/3",
)
_MULTIPORT_SLOTS = 15  # iptables multiport: at most 15 ports per rule, a range counting as two
_LABEL = "spacehub.sandbox"
Log = Callable[[str], None]


class EgressError(Exception):
    pass


@dataclass(frozen=True)
class Bridge:
    network: str  # docker network name
    interface: str  # its bridge interface on the host
    gateway: str  # the host's address on it

    @property
    def out_chain(self) -> str:
        return f"SPACEHUB-OUT-{self.interface}"

    @property
    def in_chain(self) -> str:
        return f"SPACEHUB-IN-{self.interface}"


@dataclass(frozen=True)
class Policy:
    resolvers: tuple[str, ...]
    blocked: frozenset[str]  # CIDRs
    internet: bool
    ports: frozenset[str]  # "8000" or "28100:28199" (iptables' range form)


# -- what the settings ask for ---------------------------------------------------------------------------------


def _port_items(items: Iterable[str]) -> frozenset[str]:
    out = set()
    for item in items:
        item = str(item).strip().replace("-", ":")
        if not item:
            continue
        parts = item.split(":")
        if len(parts) > 2 or not all(p.isdigit() and 0 < int(p) < 65536 for p in parts):
            raise EgressError(f"not a port or port range: {item!r}")
        out.add(item if len(parts) == 1 or parts[0] != parts[1] else parts[0])
    return frozenset(out)


def app_ports(settings: Settings) -> frozenset[str]:
    return _port_items([str(settings.port), *settings.docker_gateway_ports])


def build_ports(settings: Settings) -> frozenset[str]:
    return app_ports(settings) | _port_items([settings.docker_package_ports])


def resolvers(settings: Settings) -> tuple[str, ...]:
    """Where containers may send DNS queries: the setting, else the host's resolvers (as dockerd hands them on)."""
    if settings.docker_egress_dns:
        return tuple(sorted({str(ipaddress.IPv4Address(a.strip())) for a in settings.docker_egress_dns}))
    for conf in (Path("/etc/resolv.conf"), Path("/run/systemd/resolve/resolv.conf")):
        found = _nameservers(conf)
        if found:
            return found
    return ("8.8.4.4", "8.8.8.8")  # what dockerd gives containers when the host has only a loopback resolver


def _nameservers(conf: Path) -> tuple[str, ...]:
    try:
        text = conf.read_text()
    except OSError:
        return ()
    found = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                address = ipaddress.IPv4Address(parts[1])
            except ValueError:
                continue  # IPv6 resolvers: containers have no IPv6
            if not address.is_loopback:
                found.add(str(address))
    return tuple(sorted(found))


def host_networks() -> set[str]:
    """IPv4 networks the host is directly attached to (its LAN), from the kernel's routing table."""
    nets: set[str] = set()
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return nets
    for line in lines:
        fields = line.split()
        if len(fields) < 8 or fields[1] == "00000000" or fields[2] != "00000000":
            continue  # the default route, or a route via a gateway: not an attached network
        dest = ipaddress.IPv4Address(int(fields[1], 16).to_bytes(4, "little"))
        mask = bin(int(fields[7], 16)).count("1")
        nets.add(str(ipaddress.IPv4Network(f"{dest}/{mask}", strict=False)))
    return nets


def blocked(settings: Settings) -> frozenset[str]:
    fixed = [ipaddress.IPv4Network(n) for n in ALWAYS_BLOCKED]
    extra = {str(ipaddress.IPv4Network(n.strip(), strict=False)) for n in settings.docker_egress_blocked}
    for net in host_networks():
        if not any(ipaddress.IPv4Network(net).subnet_of(f) for f in fixed):
            extra.add(net)
    return frozenset(ALWAYS_BLOCKED) | extra


def policy(settings: Settings, ports: frozenset[str]) -> Policy:
    return Policy(resolvers(settings), blocked(settings), settings.docker_egress_internet, ports)


# -- the rules, exactly as `iptables -S` prints them -----------------------------------------------------------


def out_rules(chain: str, pol: Policy) -> list[str]:
    rules = [f"-A {chain} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"]
    for address in pol.resolvers:
        rules += [
            f"-A {chain} -d {address}/32 -p udp -m udp --dport 53 -j RETURN",
            f"-A {chain} -d {address}/32 -p tcp -m tcp --dport 53 -j RETURN",
        ]
    rules += [f"-A {chain} -d {net} {REJECT}" for net in _sorted_nets(pol.blocked)]
    if pol.internet:
        rules.append(f"-A {chain} -p tcp -m multiport --dports {INTERNET_PORTS} -j RETURN")
    rules.append(f"-A {chain} {REJECT}")
    return rules


def in_rules(chain: str, gateway: str, pol: Policy) -> list[str]:
    rules = [f"-A {chain} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"]
    for group in _port_groups(pol.ports):
        rules.append(f"-A {chain} -d {gateway}/32 -p tcp -m multiport --dports {group} -j ACCEPT")
    rules += [f"-A {chain} -p tcp -j REJECT --reject-with tcp-reset", f"-A {chain} {REJECT}"]
    return rules


def _sorted_nets(nets: Iterable[str]) -> list[str]:
    return sorted(nets, key=lambda n: (int(ipaddress.IPv4Network(n).network_address), n))


def _port_groups(ports: Iterable[str]) -> list[str]:
    groups: list[list[str]] = [[]]
    used = 0
    for item in sorted(ports, key=lambda p: int(p.split(":")[0])):
        slots = 2 if ":" in item else 1
        if used + slots > _MULTIPORT_SLOTS:
            groups.append([])
            used = 0
        groups[-1].append(item)
        used += slots
    return [",".join(g) for g in groups if g]


def _parse(lines: list[str]) -> Policy:
    """The policy a live chain pair encodes (the inverse of out_rules/in_rules)."""
    res: list[str] = []
    nets: set[str] = set()
    ports: set[str] = set()
    internet = False
    for line in lines:
        if m := re.search(r" -d (\S+)/32 -p udp -m udp --dport 53 -j RETURN$", line):
            res.append(m.group(1))
        elif m := re.search(rf" -d (\S+) {REJECT}$", line):
            nets.add(m.group(1))
        elif line.endswith(f"--dports {INTERNET_PORTS} -j RETURN"):
            internet = True
        elif m := re.search(r" -p tcp -m multiport --dports (\S+) -j ACCEPT$", line):
            ports.update(m.group(1).split(","))
    return Policy(tuple(sorted(res)), frozenset(nets), internet, frozenset(ports))


def _port_numbers(items: Iterable[str]) -> set[int]:
    numbers: set[int] = set()
    for item in items:
        low, _, high = item.partition(":")
        numbers.update(range(int(low), int(high or low) + 1))
    return numbers


# -- the kernel and the engine -----------------------------------------------------------------------------------


def _run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise EgressError(f"{argv[0]} is not installed (deploy/setup/docker.sh installs it)") from None


def chain_rules(chain: str, tool: str = "iptables") -> list[str] | None:
    """The chain's rules as `iptables -S` prints them, None when there is no such chain."""
    result = _run([tool, "-w", "-S", chain])
    if result.returncode != 0:
        if "permission denied" in result.stderr.lower() or "you must be root" in result.stderr.lower():
            raise EgressError(f"cannot read the firewall rules ({tool} needs root or CAP_NET_ADMIN)")
        return None
    return [line for line in result.stdout.splitlines() if line.startswith("-A ")]


def _jump(interface: str, chain: str) -> str:
    return f"-i {interface} -j {chain}"


def _jump_problem(parent: str, interface: str, chain: str, tool: str = "iptables") -> str | None:
    """Our jump must be there, ahead of every rule that is not one of spacehub's own jumps."""
    rules = chain_rules(parent, tool)
    if rules is None:
        return f"{tool}: chain {parent} is missing"
    wanted = f"-A {parent} {_jump(interface, chain)}"
    for rule in rules:
        if rule == wanted:
            return None
        if not re.search(r" -j SPACEHUB-\S+$", rule):
            break
    return f"{tool}: {parent} does not send traffic from {interface} to {chain} before its other rules"


def _docker() -> Any:
    import docker  # imported here: a process-runtime install never needs it loaded

    return docker.from_env(version="auto")


def _network_info(name: str) -> dict[str, Any] | None:
    from docker.errors import NotFound

    client = _docker()
    try:
        return dict(client.networks.get(name).attrs)
    except NotFound:
        return None


def _gateway(info: dict[str, Any], interface: str) -> str | None:
    from spacehub import dockerhost

    for config in (info.get("IPAM") or {}).get("Config") or []:
        if config.get("Gateway") and ":" not in config["Gateway"]:
            return str(config["Gateway"]).split("/")[0]
    return dockerhost.interface_address(interface)


def app_bridge(settings: Settings) -> Bridge | None:
    info = _network_info(settings.docker_network)
    if info is None:
        return None
    interface = str((info.get("Options") or {}).get("com.docker.network.bridge.name", ""))
    gateway = _gateway(info, interface) if interface else None
    return Bridge(settings.docker_network, interface, gateway) if gateway else None


def build_bridge() -> Bridge:
    info = _network_info(BUILD_NETWORK)
    if info is None:
        raise EgressError("the engine has no default bridge network (dockerd runs with --bridge=none?)")
    interface = str((info.get("Options") or {}).get("com.docker.network.bridge.name", "docker0"))
    gateway = _gateway(info, interface)
    if gateway is None:
        raise EgressError(f"cannot find the address of the default bridge {interface}")
    return Bridge(BUILD_NETWORK, interface, gateway)


def _network_problems(settings: Settings, info: dict[str, Any] | None) -> list[str]:
    name = settings.docker_network
    if info is None:
        return [f"docker network {name!r} does not exist"]
    options = info.get("Options") or {}
    found = []
    if info.get("Driver") != "bridge":
        found.append(f"docker network {name!r} is not a bridge network")
    if options.get("com.docker.network.bridge.name") != settings.docker_bridge:
        found.append(f"docker network {name!r} does not use the bridge {settings.docker_bridge!r}")
    if options.get("com.docker.network.bridge.enable_icc") != "false":
        found.append(f"docker network {name!r} lets containers connect to each other (icc)")
    if info.get("EnableIPv6"):
        found.append(f"docker network {name!r} has IPv6 enabled")
    return found


# -- check, install, remove --------------------------------------------------------------------------------------


def problems(settings: Settings, *, builds: bool = True) -> list[str]:
    """What of this platform's egress policy is missing or out of date (empty: all in force)."""
    if settings.docker_network == "host":
        return ["SPACEHUB_DOCKER_NETWORK=host: spaces must never share the host's network"]
    try:
        found = _network_problems(settings, _network_info(settings.docker_network))
        if found:
            return found
        pairs = [(app_bridge(settings), app_ports(settings))]
        if builds:
            pairs.append((build_bridge(), build_ports(settings)))
        for bridge, ports in pairs:
            assert bridge is not None
            found += _bridge_problems(bridge, policy(settings, ports))
    except EgressError as exc:
        return [str(exc)]
    except Exception as exc:  # noqa: BLE001 - the engine does not answer: say so, do not crash the check
        return [f"cannot inspect the docker engine: {exc}"]
    return found


def _bridge_problems(bridge: Bridge, wanted: Policy, *, choices: bool = True) -> list[str]:
    """What of the bridge's rules is gone or differs from `wanted`: a chain, a jump, a rule, a refused range, an
    allowed port, the IPv6 drop. With `choices`, also the choices that may differ between platforms sharing the
    engine (DNS resolvers, internet on 80/443): the start-up check holds this platform to its own settings, while
    the keeper (`reassert`) repairs damage and leaves those as it finds them."""
    found = []
    for chain, expected_for in (
        (bridge.out_chain, lambda pol: out_rules(bridge.out_chain, pol)),
        (bridge.in_chain, lambda pol: in_rules(bridge.in_chain, bridge.gateway, pol)),
    ):
        live = chain_rules(chain)
        if live is None:
            found.append(f"iptables chain {chain} is missing")
            continue
        have = _parse(live)
        if live != expected_for(have):
            found.append(f"iptables chain {chain} does not hold exactly spacehub's rules (gateway {bridge.gateway})")
        elif chain == bridge.out_chain:
            if choices and have.resolvers != wanted.resolvers:
                found.append(f"{chain}: DNS allowed to {have.resolvers}, the host's resolvers are {wanted.resolvers}")
            if choices and have.internet != wanted.internet:
                found.append(f"{chain}: internet on 80/443 is {'on' if have.internet else 'off'}, the settings say "
                             f"{'on' if wanted.internet else 'off'}")
            unrefused = wanted.blocked - have.blocked
            if unrefused:
                found.append(f"{chain}: does not refuse {', '.join(_sorted_nets(unrefused))}")
        else:
            allowed = _port_numbers(have.ports)
            missing = sorted(p for p in wanted.ports if not _port_numbers([p]) <= allowed)
            if missing:
                found.append(f"{chain}: does not allow port(s) {', '.join(missing)} on {bridge.gateway}")
    found += [p for p in (_jump_problem("DOCKER-USER", bridge.interface, bridge.out_chain),
                          _jump_problem("INPUT", bridge.interface, bridge.in_chain)) if p]
    found += [p for parent in ("INPUT", "FORWARD")
              if (p := _jump_problem(parent, bridge.interface, V6_CHAIN, "ip6tables"))]
    if chain_rules(V6_CHAIN, "ip6tables") != [f"-A {V6_CHAIN} -j DROP"]:
        found.append(f"ip6tables chain {V6_CHAIN} does not drop everything")
    return found


def reassert(settings: Settings, log: Log, *, builds: bool = True) -> list[str]:
    """Put back the rules of each policed bridge whose chains, rules or jumps are gone or altered (after a reboot,
    a firewall flush, a hand's mistake); return what was repaired, empty when all was in place. Root (or
    CAP_NET_ADMIN); raises EgressError when it cannot. A missing app network is not made here (dockerd keeps its
    networks, so one that is gone was removed or misnamed): the start-up check refuses, naming it."""
    if settings.docker_network == "host":
        raise EgressError("SPACEHUB_DOCKER_NETWORK=host: spaces must never share the host's network")
    info = _network_info(settings.docker_network)
    if info is None or _network_problems(settings, info):
        return []
    repaired = []
    pairs = [(app_bridge(settings), app_ports(settings))]
    if builds:
        pairs.append((build_bridge(), build_ports(settings)))
    for bridge, ports in pairs:
        if bridge is None:
            raise EgressError(f"cannot find the bridge of docker network {settings.docker_network!r}")
        wanted = policy(settings, ports)
        damage = _bridge_problems(bridge, wanted, choices=False)
        if damage:
            live = chain_rules(bridge.out_chain)
            if live:  # the choices the chain still holds stay as they are (another platform's, perhaps)
                have = _parse(live)
                wanted = Policy(have.resolvers, wanted.blocked, have.internet, wanted.ports)
            _install_bridge(bridge, wanted, log)
            repaired += damage
    return repaired


def install(settings: Settings, log: Log, *, builds: bool = True) -> None:
    """Create the app network if needed and write the rules (idempotent; root). Raises EgressError."""
    if settings.docker_network == "host":
        raise EgressError("SPACEHUB_DOCKER_NETWORK=host: spaces must never share the host's network")
    info = _network_info(settings.docker_network)
    if info is None:
        _docker().networks.create(
            settings.docker_network,
            driver="bridge",
            options={
                "com.docker.network.bridge.name": settings.docker_bridge,
                "com.docker.network.bridge.enable_icc": "false",
                "com.docker.network.bridge.enable_ip_masquerade": "true",
            },
            labels={_LABEL: "1"},
        )
        log(f"created docker network {settings.docker_network} (bridge {settings.docker_bridge}, icc off)")
        info = _network_info(settings.docker_network)
    bad = _network_problems(settings, info)
    if bad:
        raise EgressError("; ".join(bad) + " (remove it, or pick another SPACEHUB_DOCKER_NETWORK)")
    pairs = [(app_bridge(settings), app_ports(settings))]
    if builds:
        pairs.append((build_bridge(), build_ports(settings)))
    for bridge, ports in pairs:
        assert bridge is not None
        _install_bridge(bridge, policy(settings, ports), log)


def _install_bridge(bridge: Bridge, wanted: Policy, log: Log) -> None:
    # Ports and refused ranges only grow: other platforms on this engine keep what they were given.
    have_out = _parse(chain_rules(bridge.out_chain) or [])
    have_in = _parse(chain_rules(bridge.in_chain) or [])
    pol = Policy(wanted.resolvers, wanted.blocked | have_out.blocked, wanted.internet, wanted.ports | have_in.ports)
    # One iptables-restore: each chain is emptied and refilled in a single transaction, never open meanwhile.
    payload = "\n".join(
        ["*filter", f":{bridge.out_chain} - [0:0]", f":{bridge.in_chain} - [0:0]",
         *out_rules(bridge.out_chain, pol), *in_rules(bridge.in_chain, bridge.gateway, pol), "COMMIT", ""]
    )
    result = _run(["iptables-restore", "-w", "--noflush"], stdin=payload)
    if result.returncode != 0:
        raise EgressError(f"iptables-restore failed: {result.stderr.strip()}")
    _ensure_jump("DOCKER-USER", bridge.interface, bridge.out_chain)
    _ensure_jump("INPUT", bridge.interface, bridge.in_chain)
    v6 = chain_rules(V6_CHAIN, "ip6tables")
    if v6 is None:
        _checked(["ip6tables", "-w", "-N", V6_CHAIN])
    if v6 != [f"-A {V6_CHAIN} -j DROP"]:
        _checked(["ip6tables", "-w", "-F", V6_CHAIN])
        _checked(["ip6tables", "-w", "-A", V6_CHAIN, "-j", "DROP"])
    for parent in ("INPUT", "FORWARD"):
        _ensure_jump(parent, bridge.interface, V6_CHAIN, "ip6tables")
    log(f"egress rules in force on {bridge.interface} ({bridge.network}, gateway {bridge.gateway}): host ports "
        f"{','.join(sorted(pol.ports))}; DNS to {','.join(pol.resolvers)}; internet 80/443 "
        f"{'on' if pol.internet else 'off'}")


def _ensure_jump(parent: str, interface: str, chain: str, tool: str = "iptables") -> None:
    if _jump_problem(parent, interface, chain, tool) is None:
        return
    spec = ["-i", interface, "-j", chain]
    while _run([tool, "-w", "-C", parent, *spec]).returncode == 0:  # present but behind other rules: move it
        _checked([tool, "-w", "-D", parent, *spec])
    _checked([tool, "-w", "-I", parent, "1", *spec])


def _checked(argv: list[str]) -> None:
    result = _run(argv)
    if result.returncode != 0:
        raise EgressError(f"{' '.join(argv)} failed: {result.stderr.strip()}")


def remove(settings: Settings, log: Log, *, builds: bool = True) -> None:
    """Take this platform's rules away (and the app network, when no container uses it)."""
    bridges = []
    app = app_bridge(settings) if _network_info(settings.docker_network) else None
    if app is not None:
        bridges.append(app)
    if builds:
        bridges.append(build_bridge())
    for bridge in bridges:
        for tool, parent, chain in (("iptables", "DOCKER-USER", bridge.out_chain),
                                    ("iptables", "INPUT", bridge.in_chain),
                                    ("ip6tables", "INPUT", V6_CHAIN), ("ip6tables", "FORWARD", V6_CHAIN)):
            spec = ["-i", bridge.interface, "-j", chain]
            while _run([tool, "-w", "-C", parent, *spec]).returncode == 0:
                _checked([tool, "-w", "-D", parent, *spec])
        for chain in (bridge.out_chain, bridge.in_chain):
            if chain_rules(chain) is not None:
                _checked(["iptables", "-w", "-F", chain])
                _checked(["iptables", "-w", "-X", chain])
        log(f"egress rules removed from {bridge.interface}")
    if app is not None:
        from docker.errors import APIError

        try:
            _docker().networks.get(settings.docker_network).remove()
            log(f"removed docker network {settings.docker_network}")
        except APIError as exc:
            log(f"kept docker network {settings.docker_network}: {exc}")
