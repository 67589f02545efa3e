"""What the control plane needs to know about the local Docker engine: does one answer, and where is the bridge.

Both halves ask: `SPACEHUB_RUNTIME=auto` picks Docker when an engine answers (the worker side), and `serve` also
listens on the bridge gateway when spaces run in containers, so that they reach the public port (HF_ENDPOINT)
as `host.docker.internal` and nothing else of the platform (design.md §4).
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import socket
import struct
import subprocess

from spacehub.settings import Settings

# The name containers use for the host (mapped to the bridge gateway with `host-gateway`).
HOST_ALIAS = "host.docker.internal"


def engine_answers(timeout_s: float) -> bool:
    """Whether a Docker engine (DOCKER_HOST, else the default socket) answers a ping within `timeout_s`."""
    import docker  # imported here: a process-runtime install never needs it loaded

    try:
        client = docker.from_env(timeout=max(1, int(timeout_s + 0.999)))
    except Exception:  # noqa: BLE001 - no socket, refused, bad DOCKER_HOST: all mean "no engine"
        return False
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001
        return False
    finally:
        client.close()


def uses_docker(settings: Settings) -> bool:
    """Whether new spaces run in containers: `docker`, or `auto` with an engine that answers."""
    if settings.runtime == "docker":
        return True
    return settings.runtime == "auto" and engine_answers(settings.docker_ping_timeout_s)


def bridge_gateway(cli: str = "/usr/bin/docker", network: str = "bridge") -> str | None:
    """The host's IPv4 address on a docker network (where containers reach the host), or None.

    dockerd 20.10 leaves `Gateway` out of the default bridge's IPAM config, so the bridge interface's own
    address is the next answer, and the subnet's first address (dockerd's choice) the last.
    """
    try:
        result = subprocess.run([cli, "network", "inspect", network], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    info = json.loads(result.stdout)[0]
    configs = [c for c in (info.get("IPAM") or {}).get("Config") or [] if ":" not in c.get("Subnet", ":")]
    for config in configs:
        if config.get("Gateway"):
            return str(config["Gateway"]).split("/")[0]
    bridge = (info.get("Options") or {}).get("com.docker.network.bridge.name", "docker0")
    address = interface_address(bridge)
    if address:
        return address
    if configs:
        return str(next(ipaddress.ip_network(configs[0]["Subnet"]).hosts()))
    return None


def interface_address(name: str) -> str | None:
    """IPv4 address of a local network interface (SIOCGIFADDR), None if there is no such interface."""
    siocgifaddr = 0x8915
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            packed = fcntl.ioctl(sock.fileno(), siocgifaddr, struct.pack("256s", name.encode()[:15]))
        except OSError:
            return None
    return socket.inet_ntoa(packed[20:24])
