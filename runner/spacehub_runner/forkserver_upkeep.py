"""The supervisor's care of fork-servers (`spacehub_runner.runtimes.forkserver`): keep one per environment that
spaces use, stop the others.

An environment is in use while a space runs an app from it (its handle names it) or will start one from it on
its own: a space that should run (starting, running), that sleeps and wakes on the next request, or that is
building a new revision, whose current build made a `process-env` artifact (or, while that build has no
artifact yet, whose last running revision's build did: a code-only change keeps its environment). Such an
environment gets its fork-server started when none answers (after a machine restart, a crash, or a server
stopped while the space slept), so that the wake that follows forks in milliseconds instead of importing for
seconds. A server of an environment outside that set, with no live child, is stopped once it has started nothing
for SPACEHUB_FORK_SERVER_IDLE_S. Starting never waits here: the server imports on its own, and a start that
comes meanwhile waits for it (`ForkServer.ensure`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import and_, select
from sqlalchemy.orm import aliased

from spacehub.context import Platform
from spacehub.stages import SHOULD_RUN, Stage
from spacehub.store.models import Build, Space
from spacehub_runner.plugs import Artifact
from spacehub_runner.runtimes import forkserver

log = logging.getLogger("spacehub.forkserver")

# Stages whose space will start an app from its current build without its owner doing anything.
_WILL_RUN = SHOULD_RUN | {Stage.SLEEPING, Stage.BUILDING, Stage.RUNNING_BUILDING}


def envs_in_use(platform: Platform) -> dict[str, Path]:
    """env hash -> virtualenv of every environment some space runs or will run an app from."""
    used: dict[str, Path] = {}
    desired, running = aliased(Build), aliased(Build)
    with platform.db.session() as session:
        rows = session.execute(
            select(Space.stage, Space.handle, desired.artifact, running.artifact)
            .outerjoin(desired, and_(desired.space_id == Space.id, desired.sha == Space.desired_sha))
            .outerjoin(running, and_(running.space_id == Space.id, running.sha == Space.running_sha))
            .where(Space.repo_type == "space"))
        for stage, handle, desired_artifact, running_artifact in rows:
            if handle and handle.get("runtime") == "process" and handle.get("data", {}).get("env_path"):
                venv = Path(handle["data"]["env_path"])
                used[venv.name] = venv
            artifact = desired_artifact or running_artifact
            if stage in _WILL_RUN and artifact and artifact.get("kind") == "process-env" and artifact.get("env_path"):
                venv = Path(artifact["env_path"])
                used[venv.name] = venv
    return used


def tend(platform: Platform) -> None:
    """One round: start missing servers of environments in use, stop idle servers of the others."""
    settings = platform.settings
    forkserver.reap_spawned()
    wanted = envs_in_use(platform) if settings.fork_server else {}
    if wanted:
        from spacehub_runner.runtimes.process import ProcessRuntime

        runtime = ProcessRuntime(settings)
        for venv in wanted.values():
            if not venv.is_dir():
                continue  # collected, or not built yet: the next start rebuilds and starts the server
            server = runtime.fork_server(Artifact(kind="process-env", key="", ref="", env_path=str(venv)))
            if not server.current(server.hello()):
                server.launch()  # returns at once; a server already starting holds the lock and is left be
    forkserver.stop_unused(settings, set(wanted))
