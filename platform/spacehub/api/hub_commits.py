"""The Hub's upload path: preupload, LFS uploads (`spacehub.api.hub_lfs`), then one NDJSON commit.

Preupload answers `uploadMode: "lfs"` for files at or over `lfs_threshold_bytes` and for paths the repo's
`.gitattributes` marks `filter=lfs`, `"regular"` for the rest (content inline in the commit). It also returns
each path's current id (git blob id, or the sha256 of an LFS file: the client skips files that did not change)
and whether the repo's `.gitignore` (the uploaded one first) leaves the file out.

huggingface_hub >= 1.20 with `hf_xet` installed sends `lfs` files through Xet, which spacehub does not speak,
unless `HF_HUB_DISABLE_XET=1` (nothing a server answers changes that choice); `/xet-write-token` answers with
a message saying so. Installs whose users cannot set it choose `lfs_threshold_bytes = -1` (all inline).

The commit streams to spool files under the upload caps and lands as one git commit overlaid on the branch:
`lfsFile` operations become LFS pointers, after checking that the caller uploaded the object (or the repo holds
it). A commit to the default branch builds the space exactly like a REST upload.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from spacehub import access, commits, lfs, ratelimit, repoview
from spacehub.api.hubpaths import base_url, repo_type_of, repo_url, revision_after
from spacehub.api.uploads import limits_of
from spacehub.archives import check_relpath
from spacehub.commits import CommitOutcome
from spacehub.commitstream import CommitStreamParser, ParsedCommit
from spacehub.context import Platform
from spacehub.errors import InvalidInput, NotFound, PayloadTooLarge
from spacehub.requestdeps import SESSION, get_platform, require_user
from spacehub.store.models import User

router = APIRouter()

FEED_BYTES = 1024 * 1024  # body bytes handed to the parser (off the event loop) at a time


class PreuploadFile(BaseModel):
    model_config = ConfigDict(extra="ignore")
    path: str
    size: int = 0
    sample: str = ""


class Preupload(BaseModel):
    model_config = ConfigDict(extra="ignore")
    files: list[PreuploadFile] = Field(default_factory=list)
    gitIgnore: str | None = None  # noqa: N815 - the Hub's key


def _refuse_pull_requests(create_pr: str | None) -> None:
    if create_pr not in (None, "", "0", "false"):
        raise InvalidInput("pull requests are not supported here: commit to a branch instead")


@router.post("/api/{kind:repokind}/{owner}/{name}/preupload/{rest:path}")
def preupload(kind: str, owner: str, name: str, rest: str, body: Preupload, request: Request,
              create_pr: str | None = None, platform: Platform = Depends(get_platform),
              session: Session = SESSION, user: User = Depends(require_user)) -> JSONResponse:
    space = access.get_writable(session, user, owner, name, repo_type_of(kind))
    _refuse_pull_requests(create_pr)
    sha = repoview.resolve(platform, space, revision_after(request, "preupload", 4))
    limits = limits_of(platform.settings)
    if len(body.files) > limits.max_entries:
        raise PayloadTooLarge(f"more than {limits.max_entries} files in one preupload")
    current = {entry.path: entry for entry in repoview.files(platform, space, sha)}
    lfs_spec = lfs.lfs_patterns(repoview.read_text(platform, space, sha, ".gitattributes"))
    asked = [current[file.path] for file in body.files if file.path in current]
    current_lfs = lfs.pointers(platform, access.repo_key(space),
                               [entry.blob_id for entry in asked if entry.size <= lfs.MAX_POINTER_BYTES])
    gitignore = body.gitIgnore if body.gitIgnore is not None else repoview.read_text(platform, space, sha,
                                                                                     ".gitignore")
    ignore = repoview.ignore_spec(gitignore)
    files: list[dict[str, Any]] = []
    for file in body.files:
        check_relpath(file.path)  # refuse a bad path before its content is sent
        mode = _upload_mode(platform, file, lfs_spec)
        cap = platform.settings.lfs_max_file_bytes if mode == "lfs" else limits.max_file_bytes
        if file.size > cap:
            raise PayloadTooLarge(f"file {file.path!r} ({file.size} bytes) is over the limit of {cap} bytes")
        entry = current.get(file.path)
        pointer = current_lfs.get(entry.blob_id) if entry is not None else None
        oid = pointer.oid if pointer is not None else entry.blob_id if entry is not None else None
        files.append({"path": file.path, "uploadMode": mode, "shouldIgnore": repoview.is_ignored(ignore, file.path),
                      "oid": oid})
    return JSONResponse({"files": files, "commitOid": sha})


def _upload_mode(platform: Platform, file: PreuploadFile, lfs_spec: Any) -> str:
    threshold = platform.settings.lfs_threshold_bytes
    if threshold < 0 or file.size == 0:  # the client sends empty files inline whatever the answer
        return "regular"
    return "lfs" if file.size >= threshold or lfs.tracked(lfs_spec, file.path) else "regular"


@router.get("/api/{kind:repokind}/{owner}/{name}/xet-write-token/{rest:path}")
@router.get("/api/{kind:repokind}/{owner}/{name}/xet-read-token/{rest:path}")
def xet_token(kind: str, owner: str, name: str, rest: str) -> JSONResponse:
    raise NotFound("spacehub stores large files with git LFS, not Xet: set HF_HUB_DISABLE_XET=1 for "
                   "huggingface_hub (>= 1.20 picks Xet on its own when hf_xet is installed)")


@router.post("/api/{kind:repokind}/{owner}/{name}/commit/{rest:path}")
async def commit(kind: str, owner: str, name: str, rest: str, request: Request, create_pr: str | None = None,
                 platform: Platform = Depends(get_platform), user: User = Depends(require_user)) -> JSONResponse:
    repo_type = repo_type_of(kind)

    def check_writable() -> None:
        with platform.db.session() as session:
            access.get_writable(session, user, owner, name, repo_type)

    await asyncio.to_thread(check_writable)  # refuse before reading a byte of the body
    await asyncio.to_thread(ratelimit.limiter_of(platform).take, "write", ratelimit.peer_of(request), user.name)
    _refuse_pull_requests(create_pr)
    branch = revision_after(request, "commit", 4)
    limits = limits_of(platform.settings)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_upload_bytes:
        raise PayloadTooLarge(f"commit of {declared} bytes is over the limit of {limits.max_upload_bytes} bytes")
    staging = await asyncio.to_thread(commits.staging_dir, platform)
    try:
        parser = CommitStreamParser(staging, limits)
        pending = bytearray()
        async for chunk in request.stream():
            pending += chunk
            if len(pending) >= FEED_BYTES:
                await asyncio.to_thread(parser.feed, bytes(pending))
                pending.clear()
        if pending:
            await asyncio.to_thread(parser.feed, bytes(pending))
        parsed = parser.finish()
        outcome, repo_id = await asyncio.to_thread(_apply, platform, user, repo_type, owner, name, branch, parsed,
                                                    staging)
    finally:
        await asyncio.to_thread(commits.remove_tree, staging)
    url = repo_url(base_url(request, platform.settings), repo_type, repo_id)
    return JSONResponse({"success": True, "commitOid": outcome.sha, "commitUrl": f"{url}/commit/{outcome.sha}",
                         "hookOutput": "", "changed": outcome.changed, "buildId": outcome.build_id})


def _apply(platform: Platform, user: User, repo_type: str, owner: str, name: str, branch: str,
           parsed: ParsedCommit, spool: Path) -> tuple[CommitOutcome, str]:
    with platform.db.session() as session:
        space = access.get_writable(session, user, owner, name, repo_type)  # still there, still theirs
        header = parsed.header
        additions = dict(parsed.additions)
        if parsed.lfs_files:
            additions.update(_lfs_additions(platform, session, user, space, branch, parsed, spool))
        outcome = commits.commit(platform, session, space, user, branch, additions, parsed.deletions,
                                 header.summary, header.description, header.parent_commit)
        return outcome, space.repo_id


def _lfs_additions(platform: Platform, session: Session, user: User, space: Any, branch: str,
                   parsed: ParsedCommit, spool: Path) -> dict[str, Path]:
    """Pointer files for the commit's LFS files (objects checked), and `.gitattributes` rules they need."""
    key = access.repo_key(space)
    wanted: dict[str, int] = {}
    for oid, size in parsed.lfs_files.values():
        if wanted.get(oid, size) != size:
            raise InvalidInput(f"LFS object {oid} is named twice with different sizes")
        wanted[oid] = size
    lfs.check_usable(platform, session, user, key, wanted)
    added: dict[str, Path] = {}
    for number, (path, (oid, _size)) in enumerate(parsed.lfs_files.items()):
        location = spool / f"lfs-pointer-{number}"
        location.write_bytes(lfs.pointer_bytes(oid, platform.objects.size(oid) or 0))
        added[path] = location
    uploaded = parsed.additions.get(".gitattributes")
    if uploaded is not None:
        attributes: str | None = uploaded.read_text("utf-8", "replace")
    else:
        sha = repoview.resolve(platform, space, branch) if platform.repos.refs(key)["branches"] else None
        attributes = repoview.read_text(platform, space, sha, ".gitattributes")
    updated = lfs.attributes_with(attributes, parsed.lfs_files)
    if updated is not None:
        location = spool / "lfs-gitattributes"
        location.write_text(updated)
        added[".gitattributes"] = location
    return added
