"""Files of a repo as the Hub serves them: tree, paths-info, commits, refs, and downloads (`/resolve/`).

Downloads answer HEAD and GET directly with what `hf_hub_download` needs: `X-Repo-Commit`, an `ETag` that names
the content (the git blob id; for an LFS file its sha256, also as `X-Linked-Etag`, with `X-Linked-Size`), the
real `Content-Length`, and byte ranges for resumes. An LFS file is served from the object store in place of
its pointer; tree entries carry its `lfs` block (`oid`, `size`, `pointerSize`) as on the Hub. They are served from the
platform's own origin, so a file is never given a type a browser would run there (HTML, SVG, scripts): text is
`text/plain`, anything unknown is `application/octet-stream`, and a sandboxing CSP comes with every file.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy.orm import Session

from spacehub import access, lfs, repoview
from spacehub.api.hubjson import commit_json, tree_json
from spacehub.api.hubpaths import next_page_link, repo_type_of, revision_after, revision_and_path
from spacehub.context import Platform
from spacehub.errors import EntryNotFound
from spacehub.httperrors import error_response
from spacehub.repos import DEFAULT_BRANCH, CommitInfo, TreeEntry
from spacehub.requestdeps import SESSION, get_platform, optional_user, require_user
from spacehub.store.models import User

router = APIRouter()

TREE_PAGE = 1000  # entries per tree page, as on the Hub
TREE_PAGE_EXPANDED = 50  # with `expand`, each entry costs a `git log`
COMMITS_PAGE = 50
_SAFE_TYPES = re.compile(r"(image/(png|jpeg|gif|webp|avif|bmp)|audio/.+|video/.+|application/json)")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


# Listing ----------------------------------------------------------------------------------------------------


@router.get("/api/{kind:repokind}/{owner}/{name}/tree/{rest:path}")
def list_tree(kind: str, owner: str, name: str, rest: str, request: Request,
              platform: Platform = Depends(get_platform), session: Session = SESSION,
              user: User | None = Depends(optional_user), recursive: bool = False, expand: bool = False,
              cursor: int = Query(default=0, ge=0)) -> JSONResponse:
    space = access.get_visible(session, user, owner, name, repo_type_of(kind))
    revision, path = revision_and_path(request, "tree", 4)
    sha = repoview.resolve(platform, space, revision)
    if sha is None:  # an empty repo: its root is an empty folder
        if path.strip("/"):
            raise EntryNotFound(f"folder '{path}' not found in '{space.repo_id}': the repository is empty")
        return JSONResponse([])
    key = access.repo_key(space)
    entries = platform.repos.list_tree(key, sha, path, recursive)
    page = TREE_PAGE_EXPANDED if expand else TREE_PAGE
    shown = entries[cursor:cursor + page]
    found = _pointers(platform, key, shown)
    items = [tree_json(entry, _last_commit(platform, key, sha, entry) if expand else None, found.get(entry.blob_id))
             for entry in shown]
    headers = next_page_link(request, platform.settings, cursor=cursor + page) if len(entries) > cursor + page else {}
    return JSONResponse(items, headers=headers)


def _pointers(platform: Platform, key: str, entries: list[TreeEntry]) -> dict[str, lfs.Pointer]:
    return lfs.pointers(platform, key, [entry.blob_id for entry in entries
                                        if entry.kind == "file" and entry.size <= lfs.MAX_POINTER_BYTES])


def _last_commit(platform: Platform, key: str, sha: str, entry: TreeEntry) -> CommitInfo | None:
    found = platform.repos.log(key, sha, limit=1, path=entry.path)
    return found[0] if found else None


@router.post("/api/{kind:repokind}/{owner}/{name}/paths-info/{rest:path}")
def paths_info(kind: str, owner: str, name: str, rest: str, request: Request,
               platform: Platform = Depends(get_platform), session: Session = SESSION,
               user: User | None = Depends(optional_user), paths: list[str] = Form(default=[]),
               expand: bool = Form(default=False)) -> JSONResponse:
    """Entries for the paths that exist (files or folders); unknown paths are left out, as on the Hub."""
    space = access.get_visible(session, user, owner, name, repo_type_of(kind))
    sha = repoview.resolve(platform, space, revision_after(request, "paths-info", 4))
    if sha is None:
        return JSONResponse([])
    key = access.repo_key(space)
    wanted = {path.strip("/") for path in paths}
    entries = [entry for entry in platform.repos.list_tree(key, sha) if entry.path in wanted]
    found = _pointers(platform, key, entries)
    return JSONResponse([tree_json(entry, _last_commit(platform, key, sha, entry) if expand else None,
                                   found.get(entry.blob_id)) for entry in entries])


@router.get("/api/{kind:repokind}/{owner}/{name}/commits/{rest:path}")
def list_commits(kind: str, owner: str, name: str, rest: str, request: Request,
                 platform: Platform = Depends(get_platform), session: Session = SESSION,
                 user: User | None = Depends(optional_user), p: int = Query(default=0, ge=0),
                 expand: list[str] = Query(default=[], alias="expand[]")) -> JSONResponse:
    space = access.get_visible(session, user, owner, name, repo_type_of(kind))
    sha = repoview.resolve(platform, space, revision_after(request, "commits", 4))
    if sha is None:
        return JSONResponse([])
    found = platform.repos.log(access.repo_key(space), sha, limit=COMMITS_PAGE + 1, skip=p * COMMITS_PAGE)
    formatted = "formatted" in expand
    headers = next_page_link(request, platform.settings, p=p + 1) if len(found) > COMMITS_PAGE else {}
    return JSONResponse([commit_json(commit, formatted) for commit in found[:COMMITS_PAGE]], headers=headers)


@router.get("/api/{kind:repokind}/{owner}/{name}/refs")
def list_refs(kind: str, owner: str, name: str, platform: Platform = Depends(get_platform),
              session: Session = SESSION, user: User | None = Depends(optional_user),
              include_prs: bool = False) -> JSONResponse:
    space = access.get_visible(session, user, owner, name, repo_type_of(kind))
    refs = platform.repos.refs(access.repo_key(space))
    data: dict[str, Any] = {
        "branches": [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": sha} for b, sha in refs["branches"].items()],
        "converts": [],
        "tags": [{"name": t, "ref": f"refs/tags/{t}", "targetCommit": sha} for t, sha in refs["tags"].items()],
    }
    if include_prs:
        data["pullRequests"] = []
    return JSONResponse(data)


class NewBranch(BaseModel):
    model_config = ConfigDict(extra="ignore")
    startingPoint: str | None = None  # noqa: N815 - the Hub's key


class NewTag(BaseModel):
    model_config = ConfigDict(extra="ignore")
    tag: str
    message: str | None = None


@router.post("/api/{kind:repokind}/{owner}/{name}/branch/{rest:path}")
def create_branch(kind: str, owner: str, name: str, rest: str, request: Request, body: NewBranch | None = None,
                  platform: Platform = Depends(get_platform), session: Session = SESSION,
                  user: User = Depends(require_user)) -> JSONResponse:
    space = access.get_writable(session, user, owner, name, repo_type_of(kind))
    branch = revision_after(request, "branch", 4)
    start = (body.startingPoint if body else None) or DEFAULT_BRANCH
    sha = platform.repos.create_ref(access.repo_key(space), "branch", branch, start)
    return JSONResponse({"name": branch, "ref": f"refs/heads/{branch}", "targetCommit": sha})


@router.delete("/api/{kind:repokind}/{owner}/{name}/branch/{rest:path}")
def delete_branch(kind: str, owner: str, name: str, rest: str, request: Request,
                  platform: Platform = Depends(get_platform), session: Session = SESSION,
                  user: User = Depends(require_user)) -> JSONResponse:
    space = access.get_writable(session, user, owner, name, repo_type_of(kind))
    platform.repos.delete_ref(access.repo_key(space), "branch", revision_after(request, "branch", 4))
    return JSONResponse({})


@router.post("/api/{kind:repokind}/{owner}/{name}/tag/{rest:path}")
def create_tag(kind: str, owner: str, name: str, rest: str, request: Request, body: NewTag,
               platform: Platform = Depends(get_platform), session: Session = SESSION,
               user: User = Depends(require_user)) -> JSONResponse:
    """`/tag/{revision}` with `{"tag": name}`: the path names what is tagged, the body the tag."""
    space = access.get_writable(session, user, owner, name, repo_type_of(kind))
    revision = revision_after(request, "tag", 4)
    sha = platform.repos.create_ref(access.repo_key(space), "tag", body.tag, revision, body.message)
    return JSONResponse({"name": body.tag, "ref": f"refs/tags/{body.tag}", "targetCommit": sha})


@router.delete("/api/{kind:repokind}/{owner}/{name}/tag/{rest:path}")
def delete_tag(kind: str, owner: str, name: str, rest: str, request: Request,
               platform: Platform = Depends(get_platform), session: Session = SESSION,
               user: User = Depends(require_user)) -> JSONResponse:
    space = access.get_writable(session, user, owner, name, repo_type_of(kind))
    platform.repos.delete_ref(access.repo_key(space), "tag", revision_after(request, "tag", 4))
    return JSONResponse({})


# Downloads --------------------------------------------------------------------------------------------------


def _content_type(path: str) -> str:
    guessed = mimetypes.guess_type(path)[0] or ""
    if _SAFE_TYPES.fullmatch(guessed):
        return guessed
    if guessed.startswith("text/") or path.endswith((".md", ".txt", ".py", ".yaml", ".yml", ".toml", ".cfg")):
        return "text/plain; charset=utf-8"
    return "application/octet-stream"


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) of a single `Range: bytes=...` the file can satisfy; None for the whole file."""
    match = _RANGE.fullmatch((header or "").strip())
    if match is None or match.group(0) == "bytes=-":
        return None
    first, last = match.groups()
    if not first:  # a suffix: the last N bytes
        length = min(int(last), size)
        return (size - length, size - 1) if length else (size, size)
    return int(first), min(int(last), size - 1) if last else size - 1


def _download(platform: Platform, session: Session, user: User | None, request: Request, repo_type: str,
              owner: str, name: str, marker_at: int) -> Response:
    space = access.get_visible(session, user, owner, name, repo_type)
    revision, path = revision_and_path(request, "resolve", marker_at)
    sha = repoview.resolve(platform, space, revision)
    key = access.repo_key(space)
    try:
        if sha is None or not path.strip("/"):
            raise EntryNotFound(f"{path or 'an empty path'} does not exist in '{space.repo_id}' at '{revision}'")
        oid, size = platform.repos.blob(key, sha, path)
    except EntryNotFound as exc:
        missing = error_response(404, exc.message, "EntryNotFound")
        if sha is not None:  # the client remembers the file as missing at that commit
            missing.headers["X-Repo-Commit"] = sha
        return missing
    body: Callable[[int, int | None], Iterator[bytes]] = partial(platform.repos.stream_blob, key, oid)
    headers = {"ETag": f'"{oid}"', "X-Repo-Commit": sha, "Accept-Ranges": "bytes",
               "Content-Type": _content_type(path), "X-Content-Type-Options": "nosniff",
               "Content-Security-Policy": "default-src 'none'; sandbox", "Cache-Control": "private, max-age=0"}
    pointer = lfs.pointers(platform, key, [oid]).get(oid) if size <= lfs.MAX_POINTER_BYTES else None
    if pointer is not None and platform.objects.size(pointer.oid) == pointer.size:
        # The Hub's answer for an LFS file: the object's bytes, named by their sha256.
        size = pointer.size
        body = partial(platform.objects.read, pointer.oid)
        headers.update({"ETag": f'"{pointer.oid}"', "X-Linked-Etag": f'"{pointer.oid}"',
                        "X-Linked-Size": str(pointer.size)})
    wanted = _byte_range(request.headers.get("range"), size)
    status, first, last = 200, 0, size - 1
    if wanted is not None:
        first, last = wanted
        if first >= size or first > last:
            return Response(status_code=416, headers={"Content-Range": f"bytes */{size}", **headers})
        status = 206
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    headers["Content-Length"] = str(last - first + 1 if size else 0)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers)
    return StreamingResponse(body(first, last - first + 1), status_code=status, headers=headers)


@router.get("/spaces/{owner}/{name}/resolve/{rest:path}")
@router.head("/spaces/{owner}/{name}/resolve/{rest:path}", include_in_schema=False)
def resolve_space_file(owner: str, name: str, rest: str, request: Request,
                       platform: Platform = Depends(get_platform), session: Session = SESSION,
                       user: User | None = Depends(optional_user)) -> Response:
    return _download(platform, session, user, request, "space", owner, name, 3)


@router.get("/datasets/{owner}/{name}/resolve/{rest:path}")
@router.head("/datasets/{owner}/{name}/resolve/{rest:path}", include_in_schema=False)
def resolve_dataset_file(owner: str, name: str, rest: str, request: Request,
                         platform: Platform = Depends(get_platform), session: Session = SESSION,
                         user: User | None = Depends(optional_user)) -> Response:
    return _download(platform, session, user, request, "dataset", owner, name, 3)


@router.get("/{owner}/{name}/resolve/{rest:path}")
@router.head("/{owner}/{name}/resolve/{rest:path}", include_in_schema=False)
def resolve_model_file(owner: str, name: str, rest: str, request: Request,
                       platform: Platform = Depends(get_platform), session: Session = SESSION,
                       user: User | None = Depends(optional_user)) -> Response:
    return _download(platform, session, user, request, "model", owner, name, 2)

