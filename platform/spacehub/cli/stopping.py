"""`spacehub stop`: stop everything of one data dir, on purpose: `serve` (if running), every app and fork-server.

`serve` leaves apps running when it stops, so that its next start re-adopts them; this is how an operator stops
them too (before an upgrade, a move, or to free the machine). Frozen apps are woken (SIGCONT) so they get their
SIGTERM. The database is only read, never made or changed: the next start restarts the spaces that should run,
and a data dir that was never served stays without one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, make_url, select

from spacehub.servepid import running_serve
from spacehub.settings import Settings
from spacehub.store.db import Database
from spacehub.store.models import Space

Echo = Callable[[str], None]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    return True


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def stop_serve(settings: Settings, echo: Echo) -> None:
    pid = running_serve(settings)
    if pid is None:
        echo("serve: not running")
        return
    echo(f"serve (pid {pid}): asked to stop; in-flight work gets up to {settings.shutdown_grace_s:g}s")
    os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, settings.shutdown_grace_s + 30):
        echo(f"serve (pid {pid}): still running; killing it")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, 10)


def _no_database(settings: Settings) -> str | None:
    """Why there is no database to read (a SQLite file not made yet), or None. Opening SQLite would create it."""
    url = make_url(settings.effective_database_url)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).is_file():
        return f"no database at {url.database}"
    return None


def _app_handles(settings: Settings) -> tuple[list[tuple[str, Any]], str | None]:
    """(repo id, handle) of every space with an app, from SQL; and why there are none to read, if so."""
    missing = _no_database(settings)
    if missing is not None:
        return [], missing
    db = Database(settings.effective_database_url, connect_timeout_s=settings.database_connect_timeout_s)
    try:
        db.check()
        if not inspect(db.engine).has_table(Space.__tablename__):
            return [], "the database has no tables yet"
        with db.session() as session:
            rows = session.execute(select(Space.owner, Space.name, Space.handle).where(Space.handle.is_not(None)))
            return [(f"{owner}/{name}", handle) for owner, name, handle in rows], None
    finally:
        db.engine.dispose()


def stop_apps(settings: Settings, echo: Echo) -> int:
    from spacehub_runner.backends import runtime_for
    from spacehub_runner.plugs import Handle  # the CLI is where both halves meet

    apps, missing = _app_handles(settings)
    if missing is not None:
        echo(f"apps: none recorded ({missing}: this data dir was never served)")
    for repo_id, data in apps:
        handle = Handle.from_json(data)
        runtime_for(settings, handle.runtime).stop(handle)
        echo(f"app {repo_id}: stopped")
    return len(apps)


def stop_fork_servers(settings: Settings, echo: Echo) -> int:
    from spacehub_runner.runtimes import forkserver

    stopped = 0
    for env_hash in forkserver.running(settings):
        with contextlib.suppress(OSError, ValueError):
            forkserver.request(forkserver.servers_dir(settings) / f"{env_hash}.sock", {"op": "exit"}, timeout=5.0)
            echo(f"fork-server {env_hash[:12]}: stopped")
            stopped += 1
    return stopped


def _processes_working_under(folders: list[Path]) -> list[int]:
    found = []
    prefixes = [str(folder) + os.sep for folder in folders]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cwd = os.readlink(entry / "cwd") + os.sep
            if any(cwd.startswith(prefix) for prefix in prefixes):
                found.append(int(entry.name))
    return found


def sweep(settings: Settings, echo: Echo) -> int:
    """Whatever still works in an app's folder or a fork-server's (a handle lost in a crash): SIGCONT +
    SIGTERM, then SIGKILL after SPACEHUB_STOP_GRACE_S."""
    folders = [settings.apps_dir, settings.run_dir / "forkservers"]
    pids = _processes_working_under(folders)
    for pid in pids:
        for sig in (signal.SIGTERM, signal.SIGCONT):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
    deadline = time.monotonic() + settings.stop_grace_s
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if pids:
        echo(f"{len(pids)} leftover process(es) of apps or fork-servers: stopped")
    return len(pids)


def stop_everything(settings: Settings, echo: Echo) -> None:
    stop_serve(settings, echo)
    apps = stop_apps(settings, echo)
    servers = stop_fork_servers(settings, echo)
    leftovers = sweep(settings, echo)
    echo(f"stopped: {apps} app(s), {servers} fork-server(s), {leftovers} leftover process(es) under "
         f"{settings.data_dir}")
