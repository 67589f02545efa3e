"""Repositories (spaces, models, datasets) as the Hub serves them: create, delete, move, settings, info, list.

Private repos are as missing as repos that do not exist, to everyone outside their namespace, on every path
and in every list (`access.get_visible`, `access.list_visible`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from spacehub import access, lfs, ratelimit, repoview, spaces
from spacehub.api.hub_runtime import refuse_volumes
from spacehub.api.hubjson import repo_json, sibling_json
from spacehub.api.hubpaths import base_url, next_page_link, repo_type_of, repo_url, revision_after
from spacehub.context import Platform
from spacehub.errors import Conflict, InvalidInput, SpacehubError
from spacehub.repos import DEFAULT_BRANCH
from spacehub.requestdeps import SESSION, get_platform, optional_user, require_user
from spacehub.spaceconfig import parse_config, parse_front_matter
from spacehub.store.models import Space, User

router = APIRouter()

LIST_PAGE = 100  # repos per page of a list without `limit`; the next page is in the `Link` header
SUPPORTED_TYPES = ("space", "model", "dataset")


class CreateRepo(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    organization: str | None = None
    type: str = "model"
    visibility: str | None = None
    private: bool | None = None
    sdk: str | None = None
    hardware: str | None = None
    storageTier: str | None = None  # noqa: N815 - the Hub's key (1.x clients)
    sleepTimeSeconds: int | None = None  # noqa: N815
    secrets: list[dict[str, Any]] = Field(default_factory=list)
    variables: list[dict[str, Any]] = Field(default_factory=list)
    volumes: list[dict[str, Any]] | None = None


class DeleteRepo(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    organization: str | None = None
    type: str = "model"


class MoveRepo(BaseModel):
    model_config = ConfigDict(extra="ignore")
    fromRepo: str  # noqa: N815
    toRepo: str  # noqa: N815
    type: str = "model"


class RepoSettings(BaseModel):
    model_config = ConfigDict(extra="ignore")
    visibility: str | None = None
    private: bool | None = None
    gated: str | bool | None = None


class Duplicate(BaseModel):
    model_config = ConfigDict(extra="ignore")
    repository: str
    visibility: str | None = None
    private: bool | None = None
    hardware: str | None = None
    sleepTimeSeconds: int | None = None  # noqa: N815
    secrets: list[dict[str, Any]] = Field(default_factory=list)
    variables: list[dict[str, Any]] = Field(default_factory=list)
    volumes: list[dict[str, Any]] | None = None


class ValidateYaml(BaseModel):
    model_config = ConfigDict(extra="ignore")
    content: str = ""
    repoType: str = "model"  # noqa: N815


def _private_of(visibility: str | None, private: bool | None) -> bool | None:
    """`visibility` (clients >= 1.9) or `private` (older); `protected` is a private repo here."""
    if private is not None:
        return private
    if visibility is None:
        return None
    if visibility not in ("public", "private", "protected"):
        raise InvalidInput(f"visibility must be 'public', 'private' or 'protected' (got {visibility!r})")
    return visibility != "public"


def _split(body_name: str, organization: str | None) -> tuple[str | None, str]:
    # Older clients send name="owner/name" without organization.
    if organization is None and "/" in body_name:
        owner, _, name = body_name.partition("/")
        return owner, name
    return organization, body_name


def _repo_id(value: str) -> tuple[str, str]:
    """`owner/name`, shape only: owners exist already (the built-in `admin` has a reserved name)."""
    owner, sep, name = value.partition("/")
    if not sep or not owner or not name or "/" in name:
        raise InvalidInput(f"repository id {value!r} must look like 'owner/name'")
    return owner, name


def _supported(repo_type: str) -> str:
    if repo_type not in SUPPORTED_TYPES:
        raise InvalidInput(f"repository type {repo_type!r} is not supported here (use 'space', 'model' or 'dataset')")
    return repo_type


def _refuse_other_kind(session: Session, owner: str, name: str, repo_type: str) -> None:
    """One name is one repo here, whatever its kind: say so rather than answer 'exists' for the wrong kind."""
    other = session.scalar(select(Space).where(Space.key == access.space_key(owner, name),
                                               Space.repo_type != repo_type))
    if other is not None:
        raise InvalidInput(f"the name {owner}/{name} is taken by a {other.repo_type}; a {repo_type} needs another")


def _conflict_with_url(exc: Conflict, url: str) -> Conflict:
    exc.extra = {"url": url}  # type: ignore[attr-defined] # exist_ok clients read the url from the 409
    return exc


# Lifecycle --------------------------------------------------------------------------------------------------


@router.post("/api/repos/create")
def create_repo(body: CreateRepo, request: Request, platform: Platform = Depends(get_platform),
                session: Session = SESSION, user: User = Depends(require_user)) -> JSONResponse:
    repo_type = _supported(body.type)
    refuse_volumes(body.volumes)
    owner, name = _split(body.name, body.organization)
    owner = owner or user.name
    private = _private_of(body.visibility, body.private) or False
    base = base_url(request, platform.settings)
    _refuse_other_kind(session, owner, name, repo_type)
    try:
        space = spaces.create(platform, session, user, owner, name, repo_type=repo_type,
                              sdk=body.sdk if repo_type == "space" else None, private=private,
                              hardware=body.hardware, storage=body.storageTier, sleep_time=body.sleepTimeSeconds,
                              secrets=body.secrets, variables=body.variables)
    except Conflict as exc:
        raise _conflict_with_url(exc, repo_url(base, repo_type, f"{owner}/{name}")) from None
    # Now, not after the answer (when get_session's exit commits): a client uploads to the new repo at once.
    session.commit()
    return JSONResponse({"url": repo_url(base, repo_type, space.repo_id), "name": space.repo_id,
                         "id": str(space.id)})


@router.delete("/api/repos/delete")
def delete_repo(body: DeleteRepo, platform: Platform = Depends(get_platform),
                session: Session = SESSION, user: User = Depends(require_user)) -> Response:
    owner, name = _split(body.name, body.organization)
    space = access.get_writable(session, user, owner or user.name, name, _supported(body.type))
    spaces.delete(platform, session, space)
    return Response("OK", media_type="text/plain")


@router.post("/api/repos/move")
def move_repo(body: MoveRepo, platform: Platform = Depends(get_platform), session: Session = SESSION,
              user: User = Depends(require_user)) -> JSONResponse:
    repo_type = _supported(body.type)
    owner, name = _repo_id(body.fromRepo)
    new_owner, new_name = _repo_id(body.toRepo)
    space = access.get_writable(session, user, owner, name, repo_type)
    _refuse_other_kind(session, new_owner, new_name, repo_type)
    spaces.move(platform, session, user, space, new_owner, new_name)
    return JSONResponse({"success": True, "id": space.repo_id})


@router.put("/api/{kind:repokind}/{owner}/{name}/settings")
def update_settings(kind: str, owner: str, name: str, body: RepoSettings, session: Session = SESSION,
                    user: User = Depends(require_user)) -> JSONResponse:
    space = access.get_writable(session, user, owner, name, repo_type_of(kind))
    if body.gated not in (None, False, "false"):
        raise InvalidInput("gated repositories are not supported here: a repo is public or private")
    private = _private_of(body.visibility, body.private)
    if private is not None:
        spaces.set_visibility(session, space, private=private)
    session.commit()
    return JSONResponse({"private": space.private})


@router.post("/api/{kind:repokind}/{owner}/{name}/duplicate")
def duplicate_repo(kind: str, owner: str, name: str, body: Duplicate, request: Request,
                   platform: Platform = Depends(get_platform), session: Session = SESSION,
                   user: User = Depends(require_user)) -> JSONResponse:
    repo_type = repo_type_of(kind)
    refuse_volumes(body.volumes)
    source = access.get_visible(session, user, owner, name, repo_type)
    ratelimit.limiter_of(platform).take("write", ratelimit.peer_of(request), user.name)
    target_owner, target_name = _split(body.repository, None)
    target_owner = target_owner or user.name
    base = base_url(request, platform.settings)
    _refuse_other_kind(session, target_owner, target_name, repo_type)
    try:
        copy = spaces.duplicate(platform, session, user, source, target_owner, target_name,
                                private=_private_of(body.visibility, body.private), hardware=body.hardware,
                                sleep_time=body.sleepTimeSeconds, secrets=body.secrets,
                                variables=body.variables)
    except Conflict as exc:
        raise _conflict_with_url(exc, repo_url(base, repo_type, f"{target_owner}/{target_name}")) from None
    session.commit()
    return JSONResponse({"url": repo_url(base, repo_type, copy.repo_id), "filesCopyPending": False})


# Reading ----------------------------------------------------------------------------------------------------


def _info(platform: Platform, space: Space, revision: str, blobs: bool, expand: list[str]) -> dict[str, Any]:
    sha = repoview.resolve(platform, space, revision)
    entries = repoview.files(platform, space, sha)
    found = lfs.pointers(platform, access.repo_key(space),
                         [entry.blob_id for entry in entries if entry.size <= lfs.MAX_POINTER_BYTES])
    siblings = [sibling_json(entry, blobs, found.get(entry.blob_id)) for entry in entries]
    sizes = [found[entry.blob_id].size if entry.blob_id in found else entry.size for entry in entries]
    return repo_json(platform.settings, space, sha=sha, siblings=siblings,
                     card=repoview.card_data(platform, space, sha), expand=expand, used_storage=sum(sizes))


@router.get("/api/{kind:repokind}/{owner}/{name}")
def repo_info(kind: str, owner: str, name: str, platform: Platform = Depends(get_platform),
              session: Session = SESSION, user: User | None = Depends(optional_user),
              blobs: bool = False, expand: list[str] = Query(default=[])) -> JSONResponse:
    space = access.get_visible(session, user, owner, name, repo_type_of(kind))
    return JSONResponse(_info(platform, space, DEFAULT_BRANCH, blobs, expand))


@router.get("/api/{kind:repokind}/{owner}/{name}/revision/{rest:path}")
def repo_info_at(kind: str, owner: str, name: str, rest: str, request: Request,
                 platform: Platform = Depends(get_platform), session: Session = SESSION,
                 user: User | None = Depends(optional_user), blobs: bool = False,
                 expand: list[str] = Query(default=[])) -> JSONResponse:
    space = access.get_visible(session, user, owner, name, repo_type_of(kind))
    revision = revision_after(request, "revision", 4)
    return JSONResponse(_info(platform, space, revision, blobs, expand))


@router.get("/api/{kind:repokind}/{owner}/{name}/auth-check")
def auth_check(kind: str, owner: str, name: str, session: Session = SESSION,
               user: User | None = Depends(optional_user)) -> JSONResponse:
    access.get_visible(session, user, owner, name, repo_type_of(kind))
    return JSONResponse({})


@router.get("/api/{kind:repokind}/{owner}/{name}/auth-check/write")
def auth_check_write(kind: str, owner: str, name: str, session: Session = SESSION,
                     user: User = Depends(require_user)) -> JSONResponse:
    access.get_writable(session, user, owner, name, repo_type_of(kind))
    return JSONResponse({})


def _list(kind: str, request: Request, platform: Platform, session: Session, user: User | None, *,
          author: str | None, search: str | None, sort: str, limit: int | None, offset: int, tags: list[str],
          expand: list[str], full: bool, pipeline_tag: str | None = None) -> JSONResponse:
    repo_type = repo_type_of(kind)
    page = limit or LIST_PAGE
    if tags or pipeline_tag:  # tags are not columns: filter here, then page
        found = [repo for repo in access.list_visible(session, user, author=author, search=search, sort=sort,
                                                      repo_type=repo_type)
                 if set(tags) <= set(_tags(repo))
                 and (pipeline_tag is None or (repo.meta or {}).get("pipeline_tag") == pipeline_tag)]
        found = found[offset:offset + page + 1]
    else:
        found = access.list_visible(session, user, author=author, search=search, sort=sort, repo_type=repo_type,
                                    limit=page + 1, offset=offset)
    headers = next_page_link(request, platform.settings, offset=offset + page) if len(found) > page else {}
    items = []
    for repo in found[:page]:
        card = (repo.card_data or {}) if full or "cardData" in expand else None
        siblings = [sibling_json(entry, False) for entry in repoview.files(platform, repo, repo.desired_sha)] \
            if full or "siblings" in expand else None
        items.append(repo_json(platform.settings, repo, sha=repo.desired_sha, siblings=siblings, card=card,
                               expand=expand))
    return JSONResponse(items, headers=headers)


def _tags(repo: Space) -> list[str]:
    """What `filter=` matches: a space's SDK and card tags; a model's or dataset's tags as the Hub derives them."""
    if repo.repo_type != "space":
        return [str(tag) for tag in (repo.meta or {}).get("tags") or []]
    card_tags = (repo.card_data or {}).get("tags")
    return ([repo.sdk] if repo.sdk else []) + [str(tag) for tag in card_tags or []]


@router.get("/api/{kind:repokind}")
def list_repos(kind: str, request: Request, platform: Platform = Depends(get_platform),
               session: Session = SESSION, user: User | None = Depends(optional_user),
               author: str | None = None, search: str | None = None, sort: str = "lastModified",
               limit: int | None = Query(default=None, ge=1, le=1000), offset: int = Query(default=0, ge=0),
               filter: list[str] = Query(default=[]),  # noqa: A002 - the Hub's parameter name
               expand: list[str] = Query(default=[]), full: bool = False, pipeline_tag: str | None = None,
               library: list[str] = Query(default=[])) -> JSONResponse:
    return _list(kind, request, platform, session, user, author=author, search=search, sort=sort, limit=limit,
                 offset=offset, tags=filter + library, expand=expand, full=full, pipeline_tag=pipeline_tag)


# README validation ------------------------------------------------------------------------------------------


@router.post("/api/validate-yaml")
def validate_yaml(body: ValidateYaml) -> JSONResponse:
    """Always JSON, errors included: the client reads the body before it looks at the status."""
    try:
        if body.repoType == "space":
            parse_config(body.content)
        else:
            parse_front_matter(body.content)
    except SpacehubError as exc:
        return JSONResponse({"errors": [{"message": exc.message}], "warnings": []}, status_code=400)
    return JSONResponse({"errors": [], "warnings": []})
