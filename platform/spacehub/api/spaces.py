"""Spaces: the Hub's repo and runtime endpoints, plus spacehub's own `upload` and `stop`."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from spacehub import access, builds, commits, ratelimit, spaces
from spacehub.api.serialize import runtime_json
from spacehub.api.uploads import receive_upload
from spacehub.context import Platform
from spacehub.requestdeps import SESSION, get_platform, optional_user, require_user
from spacehub.stages import SERVING, Stage
from spacehub.store.models import BuildStatus, DeployOutcome, User

router = APIRouter()


@router.get("/api/spaces/{owner}/{name}/runtime")
def get_runtime(owner: str, name: str, platform: Platform = Depends(get_platform),
                session: Session = SESSION, user: User | None = Depends(optional_user)) -> JSONResponse:
    space = access.get_visible(session, user, owner, name)
    return JSONResponse(runtime_json(platform.settings, space))


@router.post("/api/spaces/{owner}/{name}/restart")
def restart_space(request: Request, owner: str, name: str, factory: bool = False,
                  platform: Platform = Depends(get_platform), session: Session = SESSION,
                  user: User = Depends(require_user)) -> JSONResponse:
    space = access.get_writable(session, user, owner, name)
    ratelimit.limiter_of(platform).take("build", ratelimit.peer_of(request), user.name)
    builds.restart(platform, session, space, factory=factory)
    return JSONResponse(runtime_json(platform.settings, space))


@router.post("/api/spaces/{owner}/{name}/pause")
def pause_space(owner: str, name: str, platform: Platform = Depends(get_platform),
                session: Session = SESSION, user: User = Depends(require_user)) -> JSONResponse:
    space = access.get_writable(session, user, owner, name)
    spaces.stop(platform, session, space, stage=Stage.PAUSED)
    return JSONResponse(runtime_json(platform.settings, space))


@router.post("/api/spaces/{owner}/{name}/stop")
def stop_space(owner: str, name: str, platform: Platform = Depends(get_platform),
               session: Session = SESSION, user: User = Depends(require_user)) -> JSONResponse:
    space = access.get_writable(session, user, owner, name)
    spaces.stop(platform, session, space, stage=Stage.STOPPED)
    return JSONResponse(runtime_json(platform.settings, space))


@router.post("/api/spaces/{owner}/{name}/upload")
async def upload(owner: str, name: str, request: Request, message: str = "Upload through spacehub",
                 platform: Platform = Depends(get_platform), user: User = Depends(require_user)) -> JSONResponse:
    """Replace the space's whole tree with a zip, a tar(.gz) or multipart files; nothing is written on refusal.

    Async only to stream the body: SQL, git and the file system run in a thread, off the event loop."""
    def check_writable() -> None:
        with platform.db.session() as session:
            access.get_writable(session, user, owner, name)

    def commit(staging: Path) -> dict[str, object]:
        with platform.db.session() as session:
            space = access.get_writable(session, user, owner, name)
            result = commits.commit_upload(platform, session, space, staging, message, user.name)
            return {"commit": result.sha, "changed": result.changed, "build_id": result.build_id,
                    "url": platform.settings.space_url(space.label)}

    await asyncio.to_thread(check_writable)  # refuse before reading a byte of the body
    await asyncio.to_thread(ratelimit.limiter_of(platform).take, "write", ratelimit.peer_of(request), user.name)
    staging = await asyncio.to_thread(commits.staging_dir, platform)
    try:
        await receive_upload(request, staging, platform.settings)
        answer = await asyncio.to_thread(commit, staging)
    finally:
        await asyncio.to_thread(commits.remove_tree, staging)
    return JSONResponse(answer)


@router.get("/api/spaces/{owner}/{name}/builds/{sha}")
def build_status(owner: str, name: str, sha: str, platform: Platform = Depends(get_platform),
                 session: Session = SESSION, user: User | None = Depends(optional_user)) -> JSONResponse:
    """spacehub's own: how the build (and start) of one revision went, so a push can wait for its outcome."""
    space = access.get_visible(session, user, owner, name)
    build = builds.find_build(session, space, sha)
    status, error = str(build.status), build.error
    deployment = builds.last_deployment(session, build)
    if build.status == BuildStatus.SUCCEEDED and deployment is not None and \
            deployment.outcome == DeployOutcome.FAILED:
        status, error = str(BuildStatus.FAILED), deployment.error  # built, but the revision never became ready
    return JSONResponse({"sha": build.sha, "status": status, "error": error,
                         "deployment": None if deployment is None else {
                             "outcome": str(deployment.outcome), "error": deployment.error,
                             "started": _iso(deployment.started_at), "ready": _iso(deployment.ready_at),
                             "drained": _iso(deployment.drained_at)},
                         "stage": str(space.stage), "message": space.message,
                         "running": space.running_sha == build.sha and space.stage in SERVING,
                         "url": platform.settings.space_url(space.label)})


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat() + "Z"
