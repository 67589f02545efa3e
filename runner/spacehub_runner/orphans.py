"""What runs or lies in a data dir that no record owns: found here, removed by the reconciler (`reconcile`).

- app process groups of the process runtime (processes working in `apps/` with an app's environment) that no
  space, draining app or live deployment names, directly or through an ancestor: left by a start cut off
  between starting the app and recording it, or by a crash (an app's helper that detached itself from the app,
  double-forked into a session of its own, is one too: it would outlive the app's stop);
- fork-servers (working in `run/forkservers/`) that answer on no socket, are not starting (their environment's
  lock is free) and have no child: a server whose socket was taken over, or one that hung;
- build folders: a build's checkout (`builds/<id>`) and the docker builder's context (`tmp/build-<id>-*`) of a
  build that no live process is running.

Each finder only reads; what it returns is acted on by the caller once it has looked orphaned long enough (a
start records its app a moment after starting it; a fork-server binds its socket after its imports).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from spacehub.settings import Settings
from spacehub.store.models import Build, BuildStatus, Deployment, RetiredApp, Space
from spacehub_runner import liveness
from spacehub_runner.deployments import LIVE
from spacehub_runner.runtimes import forkserver

_BUILD_CONTEXT = re.compile(r"build-(\d+)-")


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name: [state, ppid, pgrp, ...]; None when gone or a zombie."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return None if fields[0] in ("Z", "X") else fields


def _working_under(folder: Path) -> dict[int, Path]:
    """pid -> working folder of every live process working in `folder` or below."""
    prefix = str(folder) + os.sep
    found: dict[int, Path] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if (cwd + os.sep).startswith(prefix) and _stat(int(entry.name)) is not None:
            found[int(entry.name)] = Path(cwd)
    return found


# -- apps -------------------------------------------------------------------------------------------------------


def owned_groups(session: Session) -> set[int]:
    """Process groups that SQL names: spaces' apps, draining apps, apps of live deployments."""
    handles: list[dict[str, Any] | None] = list(session.scalars(select(Space.handle).where(Space.handle.is_not(None))))
    handles += session.scalars(select(RetiredApp.handle))
    handles += session.scalars(select(Deployment.handle).where(Deployment.outcome.in_(LIVE),
                                                               Deployment.drained_at.is_(None)))
    groups = set()
    for handle in handles:
        data = (handle or {}).get("data") or {}
        if data.get("pgid"):
            groups.add(int(data["pgid"]))
    return groups


def _is_app(pid: int, ppid: int, servers: Path) -> bool:
    """Whether the process is an app: started with an app's environment (`SPACE_ID`, which the runtime sets for
    every app), or forked by a fork-server (whose children set theirs after the fork, unseen in /proc). A
    person's shell that merely works in an app folder is neither."""
    try:
        if any(item.startswith(b"SPACE_ID=") for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")):
            return True
        return (os.readlink(f"/proc/{ppid}/cwd") + os.sep).startswith(str(servers) + os.sep)
    except OSError:
        return False


def _owned(pid: int, groups: set[int]) -> bool:
    """Whether the process, or one of its ancestors, is in an owned group or session (an app's own children may
    lead groups or sessions of their own)."""
    for _depth in range(64):
        fields = _stat(pid)
        if fields is None:
            return False
        if int(fields[2]) in groups or int(fields[3]) in groups:
            return True
        pid = int(fields[1])
        if pid <= 1:
            return False
    return False


def stray_app_groups(settings: Settings, session: Session) -> set[int]:
    """Process groups of apps (working in an app folder, with an app's environment) that nothing owns."""
    groups = owned_groups(session)
    stray, kept = set(), set()
    for pid in _working_under(settings.apps_dir):
        fields = _stat(pid)
        if fields is None:
            continue
        if not _is_app(pid, int(fields[1]), forkserver.servers_dir(settings)) or _owned(pid, groups):
            kept.add(int(fields[2]))
        else:
            stray.add(int(fields[2]))
    return stray - kept


# -- fork-servers -----------------------------------------------------------------------------------------------


def _locked_inodes() -> set[int]:
    """Inodes that someone holds a lock on (/proc/locks: `1: FLOCK ADVISORY WRITE <pid> <maj:min:inode> ...`)."""
    inodes: set[int] = set()
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return inodes
    for line in lines:
        parts = line.split()
        if "->" in parts:  # a waiter, not a holder
            continue
        if len(parts) >= 6:
            inodes.add(int(parts[5].rsplit(":", 1)[-1]))
    return inodes


def stray_fork_servers(settings: Settings) -> set[int]:
    """pids of fork-servers of this data dir that answer on no socket, are not starting and have no child."""
    folder = forkserver.servers_dir(settings)
    processes = _working_under(folder)
    if not processes:
        return set()
    answering = {int(info.get("pid", 0)) for info in forkserver.running(settings).values()}
    locked = _locked_inodes()
    parents = {int(fields[1]) for pid in _all_pids() if (fields := _stat(pid)) is not None}
    stray = set()
    for pid, cwd in processes.items():
        fields = _stat(pid)
        if fields is None or pid in answering or int(fields[1]) in processes:
            continue  # gone, serving, or a child on its way to its app (its server answers for it)
        if pid in parents:
            continue  # it has children: apps whose exit it reports
        lock = folder / (cwd.relative_to(folder).parts[0].removesuffix(".home") + ".lock")
        try:
            if lock.stat().st_ino in locked:
                continue  # a server is starting for this environment: maybe this one
        except OSError:
            pass
        stray.add(pid)
    return stray


def _all_pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


# -- build folders ----------------------------------------------------------------------------------------------


def build_folders(settings: Settings) -> dict[Path, int]:
    """Every build's checkout and docker build context on disk -> its build id."""
    found: dict[Path, int] = {}
    builds = settings.data_dir / "builds"
    if builds.is_dir():
        found.update({entry: int(entry.name) for entry in builds.iterdir() if entry.name.isdigit()})
    tmp = settings.data_dir / "tmp"
    if tmp.is_dir():
        for entry in tmp.iterdir():
            if match := _BUILD_CONTEXT.match(entry.name):
                found[entry] = int(match.group(1))
    return found


def running_builds(session: Session) -> set[int]:
    """Builds a live process (or one this host cannot see) is running, or that are queued to run."""
    running = set()
    for build_id, status, runner in session.execute(
            select(Build.id, Build.status, Build.runner).where(Build.status.in_(BuildStatus.ACTIVE))):
        if status == BuildStatus.QUEUED or liveness.alive(runner) is not False:
            running.add(build_id)
    return running


def stray_build_folders(settings: Settings, session: Session) -> list[Path]:
    """Listed before SQL is read: a build that starts meanwhile is seen running, so its new folder is kept."""
    folders = build_folders(settings)
    running = running_builds(session)
    return [path for path, build_id in folders.items() if build_id not in running]
