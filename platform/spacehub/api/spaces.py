"""Spaces: the Hub's repo and runtime endpoints, plus spacehub's own `upload` and `stop`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from spacehub import spaces
from spacehub.api.deps import get_platform, get_session, optional_user, require_user
from spacehub.api.serialize import runtime_json, space_json
from spacehub.api.uploads import receive_upload
from spacehub.context import Platform
from spacehub.errors import Conflict, InvalidInput
from spacehub.stages import SERVING, Stage
from spacehub.store.models import User

router = APIRouter()


class CreateRepo(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    organization: str | None = None
    type: str = "model"
    visibility: str | None = None
    private: bool | None = None
    sdk: str | None = None
    hardware: str | None = None
    storageTier: str | None = None  # noqa: N815 - the Hub's key
    sleepTimeSeconds: int | None = None  # noqa: N815
    secrets: list[dict[str, Any]] = Field(default_factory=list)
    variables: list[dict[str, Any]] = Field(default_factory=list)


class DeleteRepo(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    organization: str | None = None
    type: str = "model"


def _repo_url(platform: Platform, repo_type: str, repo_id: str) -> str:
    prefix = "" if repo_type == "model" else f"{repo_type}s/"
    return f"{platform.settings.base_url}/{prefix}{repo_id}"


def _split(body_name: str, organization: str | None) -> tuple[str | None, str]:
    # Older clients send name="owner/name" without organization.
    if organization is None and "/" in body_name:
        owner, _, name = body_name.partition("/")
        return owner, name
    return organization, body_name


@router.post("/api/repos/create")
def create_repo(body: CreateRepo, platform: Platform = Depends(get_platform),
                session: Session = Depends(get_session), user: User = Depends(require_user)) -> JSONResponse:
    if body.type not in ("space", "model"):
        raise InvalidInput(f"repository type {body.type!r} is not supported (use 'space' or 'model')")
    owner, name = _split(body.name, body.organization)
    private = body.private if body.private is not None else body.visibility in ("private", "protected")
    url = _repo_url(platform, body.type, f"{owner or user.name}/{name}")
    try:
        space = spaces.create(platform, session, user, owner, name, repo_type=body.type, sdk=body.sdk,
                              private=private, hardware=body.hardware, storage=body.storageTier,
                              sleep_time=body.sleepTimeSeconds, secrets=body.secrets, variables=body.variables)
    except Conflict as exc:
        exc.extra = {"url": url}  # type: ignore[attr-defined] # exist_ok clients read the url from the 409
        raise
    return JSONResponse({"url": _repo_url(platform, body.type, space.repo_id), "name": space.repo_id,
                         "id": str(space.id)})


@router.delete("/api/repos/delete")
def delete_repo(body: DeleteRepo, platform: Platform = Depends(get_platform),
                session: Session = Depends(get_session), user: User = Depends(require_user)) -> Response:
    owner, name = _split(body.name, body.organization)
    space = spaces.get_writable(session, user, owner or user.name, name, body.type)
    spaces.delete(platform, session, space)
    return Response("OK", media_type="text/plain")


@router.get("/api/spaces")
def list_spaces(request: Request, platform: Platform = Depends(get_platform),
                session: Session = Depends(get_session), user: User | None = Depends(optional_user),
                author: str | None = None, search: str | None = None, sort: str = "lastModified",
                limit: int | None = Query(default=None, ge=1, le=1000),
                offset: int = Query(default=0, ge=0)) -> JSONResponse:
    page = limit or 100
    found = spaces.list_visible(session, user, author=author, search=search, sort=sort, limit=page + 1,
                                offset=offset)
    headers = {}
    if len(found) > page and limit is None:
        # GitHub-style absolute next link: the client follows it verbatim.
        next_url = request.url.include_query_params(offset=offset + page)
        headers["Link"] = f'<{platform.settings.base_url}{next_url.path}?{next_url.query}>; rel="next"'
    return JSONResponse([space_json(platform.settings, s) for s in found[:page]], headers=headers)


@router.get("/api/spaces/{owner}/{name}")
def space_info(owner: str, name: str, platform: Platform = Depends(get_platform),
               session: Session = Depends(get_session), user: User | None = Depends(optional_user)) -> JSONResponse:
    space = spaces.get_visible(session, user, owner, name)
    siblings = None
    if space.desired_sha:
        entries = platform.repos.list_tree(spaces.repo_key(space), space.desired_sha)
        siblings = [{"rfilename": e.path} for e in entries if e.kind == "file"]
    return JSONResponse(space_json(platform.settings, space, siblings or []))


@router.get("/api/spaces/{owner}/{name}/runtime")
def get_runtime(owner: str, name: str, platform: Platform = Depends(get_platform),
                session: Session = Depends(get_session), user: User | None = Depends(optional_user)) -> JSONResponse:
    space = spaces.get_visible(session, user, owner, name)
    return JSONResponse(runtime_json(platform.settings, space))


@router.post("/api/spaces/{owner}/{name}/restart")
def restart_space(owner: str, name: str, factory: bool = False, platform: Platform = Depends(get_platform),
                  session: Session = Depends(get_session), user: User = Depends(require_user)) -> JSONResponse:
    space = spaces.get_writable(session, user, owner, name)
    spaces.restart(platform, session, space, factory=factory)
    return JSONResponse(runtime_json(platform.settings, space))


@router.post("/api/spaces/{owner}/{name}/pause")
def pause_space(owner: str, name: str, platform: Platform = Depends(get_platform),
                session: Session = Depends(get_session), user: User = Depends(require_user)) -> JSONResponse:
    space = spaces.get_writable(session, user, owner, name)
    spaces.stop(platform, session, space, stage=Stage.PAUSED)
    return JSONResponse(runtime_json(platform.settings, space))


@router.post("/api/spaces/{owner}/{name}/stop")
def stop_space(owner: str, name: str, platform: Platform = Depends(get_platform),
               session: Session = Depends(get_session), user: User = Depends(require_user)) -> JSONResponse:
    space = spaces.get_writable(session, user, owner, name)
    spaces.stop(platform, session, space, stage=Stage.STOPPED)
    return JSONResponse(runtime_json(platform.settings, space))


@router.post("/api/spaces/{owner}/{name}/upload")
async def upload(owner: str, name: str, request: Request, message: str = "Upload through spacehub",
                 platform: Platform = Depends(get_platform), user: User = Depends(require_user)) -> JSONResponse:
    """Replace the space's whole tree with a zip, a tar(.gz) or multipart files; nothing is written on refusal."""
    with platform.db.session() as session:
        spaces.get_writable(session, user, owner, name)  # refuse before reading a byte of the body
    staging = spaces.staging_dir(platform)
    try:
        await receive_upload(request, staging, platform.settings)
        with platform.db.session() as session:
            space = spaces.get_writable(session, user, owner, name)
            result = spaces.commit_upload(platform, session, space, staging, message, user.name)
            url = platform.settings.space_url(space.label)
    finally:
        spaces.remove_tree(staging)
    return JSONResponse({"commit": result.sha, "changed": result.changed, "build_id": result.build_id,
                         "url": url})



@router.get("/api/spaces/{owner}/{name}/builds/{sha}")
def build_status(owner: str, name: str, sha: str, platform: Platform = Depends(get_platform),
                 session: Session = Depends(get_session), user: User | None = Depends(optional_user)) -> JSONResponse:
    """spacehub's own: how the build (and start) of one revision went, so a push can wait for its outcome."""
    space = spaces.get_visible(session, user, owner, name)
    build = spaces.find_build(session, space, sha)
    return JSONResponse({"sha": build.sha, "status": build.status, "error": build.error,
                         "stage": str(space.stage), "message": space.message,
                         "running": space.running_sha == build.sha and space.stage in SERVING,
                         "url": platform.settings.space_url(space.label)})
