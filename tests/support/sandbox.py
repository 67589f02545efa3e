"""The Docker runtime's sandbox in tests: installed with the test port range, and targets the tests own.

Network tests here send traffic only to this machine's bridges and containers and into network namespaces the
test creates. `Targets` is such a namespace: a veth pair into it, the private address on its end, plus
169.254.169.254 (the cloud metadata address) and an address of TEST-NET-2 standing in for "the public
internet", each routed from the host into the namespace alone for the life of the fixture, and listeners on tcp
80, 443 and 8080 there. Nothing ever leaves the machine.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from spacehub import sandbox
from spacehub.settings import Settings
from support.server import SANDBOX_TEST_PORTS

METADATA = "169.254.169.254"
TARGET_PORTS = (80, 443, 8080)
# Ports no rule ever allows (below the test range, outside the kernel's ephemeral range): host listeners the
# containers must not reach.
FORBIDDEN_PORTS = range(20000, 28000)

DNS_ANSWER = "203.0.113.7"  # what the namespace's resolver answers for every name
LISTENER = r"""
import socket, sys, threading
def serve(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(64)
    while True:
        conn, _ = s.accept()
        with conn:
            conn.sendall(f"{sys.argv[1]}:{port}\n".encode())
def dns():
    # Answers every A query with the address in argv, anything else with no records: a resolver of our own.
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 53))
    while True:
        query, peer = s.recvfrom(512)
        end = query.index(b"\0", 12) + 5
        is_a = query[end - 4:end - 2] == b"\0\1"
        answer = b"\xc0\x0c\0\1\0\1\0\0\0\x3c\0\4" + socket.inet_aton(sys.argv[2]) if is_a else b""
        header = query[:2] + b"\x81\x80\0\1" + (b"\0\1" if is_a else b"\0\0") + b"\0\0\0\0"
        s.sendto(header + query[12:end] + answer, peer)
for p in sys.argv[3:]:
    threading.Thread(target=serve, args=(int(p),), daemon=True).start()
threading.Thread(target=dns, daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""


def sandbox_settings(**overrides: object) -> Settings:
    """Settings as the test sandbox is installed: the platforms under test take their ports from the range."""
    ports = f"{SANDBOX_TEST_PORTS.start}-{SANDBOX_TEST_PORTS.stop - 1}"
    return Settings(docker_gateway_ports=[ports], **overrides)  # type: ignore[arg-type]


def ensure_installed() -> None:
    """Install the sandbox (idempotent, as `make test`'s setup does) when it is not whole for the test range."""
    settings = sandbox_settings()
    if sandbox.problems(settings):
        sandbox.install(settings, lambda line: None)
    found = sandbox.problems(settings)
    if found:
        raise RuntimeError(sandbox.refusal(found))


def ip(*args: str, netns: str | None = None) -> str:
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip()}")
    return result.stdout


@dataclass
class Targets:
    netns: str
    private: str  # the namespace's own address on its veth: a private-range address the test owns
    public: str  # stands in for a public internet address
    host_side: str
    routes: list[str] = field(default_factory=list)
    listener: subprocess.Popen[bytes] | None = None

    @property
    def metadata(self) -> str:
        return METADATA


@contextlib.contextmanager
def targets() -> Iterator[Targets]:
    tag = secrets.token_hex(3)
    netns, host_if, ns_if = f"shbox-{tag}", f"shb{tag}a", f"shb{tag}b"
    # A /30 of 10.213.0.0/16 nothing on this machine uses, and a TEST-NET-2 address for "public".
    for _ in range(50):
        base = ipaddress.IPv4Address(f"10.213.{random.randrange(256)}.{random.randrange(0, 256, 4)}")
        if not any(routed_here(str(base + i)) for i in (1, 2)):
            break
    else:
        raise RuntimeError("no free /30 in 10.213.0.0/16 on this machine")
    public = f"198.51.100.{random.randrange(2, 250)}"
    for address in (METADATA, public):
        if routed_here(address):
            raise RuntimeError(f"{address} is already routed somewhere on this machine: refusing to shadow it")
    found = Targets(netns, str(base + 2), public, str(base + 1))
    try:
        ip("netns", "add", netns)
        ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        ip("link", "set", ns_if, "netns", netns)
        ip("addr", "add", f"{found.host_side}/30", "dev", host_if)
        ip("link", "set", host_if, "up")
        for address in (f"{found.private}/30", f"{METADATA}/32", f"{public}/32"):
            ip("addr", "add", address, "dev", ns_if, netns=netns)
        ip("link", "set", ns_if, "up", netns=netns)
        ip("link", "set", "lo", "up", netns=netns)
        ip("route", "add", "default", "via", found.host_side, netns=netns)
        for address in (METADATA, public):
            ip("route", "add", f"{address}/32", "via", found.private)
            found.routes.append(address)
            # Never a packet to the real address: the host must route it into our namespace.
            assert f"dev {host_if}" in ip("route", "get", address), ip("route", "get", address)
        found.listener = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-c", LISTENER, netns, DNS_ANSWER, *map(str, TARGET_PORTS)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        assert found.listener.stdout is not None
        if found.listener.stdout.readline().strip() != b"ready":
            raise RuntimeError("the namespace's listener did not start")
        yield found
    finally:
        if found.listener is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(found.listener.pid, signal.SIGKILL)
            found.listener.wait()
        for address in found.routes:
            subprocess.run(["ip", "route", "del", f"{address}/32"], capture_output=True)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)


def routed_here(address: str) -> bool:
    """Whether the host routes `address` other than through its default route (so it is someone's already)."""
    default = ip("route", "show", "default").split()
    via = default[default.index("via") + 1] if "via" in default else None
    first = ip("route", "get", address).split("\n")[0].split()
    return not (via is not None and "via" in first and first[first.index("via") + 1] == via)


@contextlib.contextmanager
def host_listener(address: str, ports: range = FORBIDDEN_PORTS) -> Iterator[int]:
    """A listener on the host at `address`, on a port no egress rule allows; yields the port."""
    import socket
    import threading

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    for port in random.sample(ports, min(200, len(ports))):
        try:
            sock.bind((address, port))
            break
        except OSError:
            continue
    else:
        raise RuntimeError(f"no free port on {address}")
    sock.listen(16)
    stop = threading.Event()

    def serve() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                conn, _ = sock.accept()
                conn.sendall(b"host\n")
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(sock.getsockname()[1])
    finally:
        stop.set()
        thread.join(2)
        sock.close()


def wait_port(host: str, port: int, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def host_address() -> str:
    """The host's own address on its default route's interface (not loopback, not a bridge)."""
    from spacehub.dockerhost import interface_address

    default = ip("route", "show", "default").split()
    address = interface_address(default[default.index("dev") + 1])
    if address is None:
        raise RuntimeError("the host has no IPv4 address on its default interface")
    return address

