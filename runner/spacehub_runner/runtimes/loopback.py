"""The process runtime's promise that an app listens on loopback only, kept even when the app binds its own host
(`uvicorn.run(host="0.0.0.0")`, `demo.launch(server_name="0.0.0.0")`).

An app process shares the host's network, so nothing stops its bind; what it listens on is read back from the
kernel instead (/proc/net/tcp and tcp6: every listening socket, with its inode) and matched against the sockets
the app's process group holds open. A listener on any other address is a broken promise: the runtime kills the
app's group and says why in its log (see `process.poll_handle`), before it is ever ready or routed when it binds
at start, and at the next poll (the supervisor's tick) when it binds later.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from pathlib import Path

_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's `st` column


def _address(hex_address: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    host, _, port = hex_address.partition(":")
    raw = bytes.fromhex(host)
    # The kernel prints each 32-bit word in host (little-endian) order.
    packed = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(packed), int(port, 16)


def _is_loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def outside_listeners(proc: Path = Path("/proc")) -> dict[int, str]:
    """socket inode -> `address:port` of every listening TCP socket not bound to a loopback address."""
    found: dict[int, str] = {}
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN:
                continue
            address, port = _address(fields[1])
            if not _is_loopback(address):
                shown = f"[{address}]" if address.version == 6 else str(address)
                found[int(fields[9])] = f"{shown}:{port}"
    return found


def socket_inodes(pid: int, proc: Path = Path("/proc")) -> set[int]:
    inodes = set()
    try:
        for fd in os.scandir(proc / str(pid) / "fd"):
            try:
                target = os.readlink(fd.path)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    except OSError:
        pass
    return inodes


def public_listeners(pids: Iterable[int]) -> list[str]:
    """What these processes listen on besides loopback (`0.0.0.0:7860`, `[::]:7860`, ...); [] when nothing."""
    outside = outside_listeners()
    if not outside:  # the common case costs one read of two small tables
        return []
    held: set[int] = set()
    for pid in pids:
        held |= socket_inodes(pid)
    return sorted({outside[inode] for inode in held if inode in outside})
