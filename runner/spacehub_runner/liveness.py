"""Who runs a job, as a token the job writes to SQL when it starts (`host/pid-namespace:pid:start-time`), and
whether that process still lives: the reconciler's truth about a build or a start, which needs neither RQ's
bookkeeping nor Redis (both may be what was lost).

The start time (from /proc) guards against a reused pid. On another host nothing can be told from here: None.
Nor in another pid namespace of this host (roles in containers of their own on the host's network share its
hostname, but a pid of one means nothing in the /proc of another): None too.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (which may hold spaces): [state, ppid, ...]."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def _where() -> str:
    """This host and pid namespace (the namespace's inode: the same for every process that shares it)."""
    try:
        namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        namespace = "?"
    return f"{socket.gethostname()}/{namespace}"


def me() -> str:
    pid = os.getpid()
    fields = _stat(pid)
    return f"{_where()}:{pid}:{fields[19] if fields else ''}"


def alive(token: str | None) -> bool | None:
    """True or False for a token of this host and pid namespace; None when it is another's, or not a token."""
    parts = (token or "").rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    where, pid, started = parts[0], int(parts[1]), parts[2]
    if where != _where() or where.endswith("/?"):
        return None
    fields = _stat(pid)
    if fields is None or fields[0] in ("Z", "X"):  # gone, or dead and not yet reaped
        return False
    return not started or fields[19] == started
