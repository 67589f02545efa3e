"""The Hub's upload path: preupload, then one NDJSON commit of inline files and deletions.

Preupload answers `uploadMode: "regular"` for every file, so every client version sends content inline in the
commit and never reaches for Xet or LFS. It also returns each path's current blob id (the client skips files
that did not change) and whether the repo's `.gitignore` (the uploaded one first) leaves the file out.
The commit streams to spool files under the upload caps and lands as one git commit overlaid on the branch.
A commit to the default branch builds the space exactly like a REST upload.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from spacehub import management, repoview, spaces
from spacehub.api.deps import SESSION, get_platform, require_user
from spacehub.api.hubpaths import base_url, repo_type_of, repo_url, revision_after
from spacehub.api.uploads import limits_of
from spacehub.archives import check_relpath
from spacehub.commitstream import CommitStreamParser, ParsedCommit
from spacehub.context import Platform
from spacehub.errors import InvalidInput, PayloadTooLarge
from spacehub.management import CommitOutcome
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
    space = spaces.get_writable(session, user, owner, name, repo_type_of(kind))
    _refuse_pull_requests(create_pr)
    sha = repoview.resolve(platform, space, revision_after(request, "preupload", 4))
    limits = limits_of(platform.settings)
    if len(body.files) > limits.max_entries:
        raise PayloadTooLarge(f"more than {limits.max_entries} files in one preupload")
    for file in body.files:
        check_relpath(file.path)  # refuse a bad path before its content is sent
        if file.size > limits.max_file_bytes:
            raise PayloadTooLarge(f"file {file.path!r} ({file.size} bytes) is over the limit of "
                                  f"{limits.max_file_bytes} bytes")
    current = {entry.path: entry.blob_id for entry in repoview.files(platform, space, sha)}
    gitignore = body.gitIgnore if body.gitIgnore is not None else repoview.read_text(platform, space, sha,
                                                                                     ".gitignore")
    ignore = repoview.ignore_spec(gitignore)
    files: list[dict[str, Any]] = [{"path": file.path, "uploadMode": "regular",
                                    "shouldIgnore": repoview.is_ignored(ignore, file.path),
                                    "oid": current.get(file.path)} for file in body.files]
    return JSONResponse({"files": files, "commitOid": sha})


@router.post("/api/{kind:repokind}/{owner}/{name}/commit/{rest:path}")
async def commit(kind: str, owner: str, name: str, rest: str, request: Request, create_pr: str | None = None,
                 platform: Platform = Depends(get_platform), user: User = Depends(require_user)) -> JSONResponse:
    repo_type = repo_type_of(kind)

    def check_writable() -> None:
        with platform.db.session() as session:
            spaces.get_writable(session, user, owner, name, repo_type)

    await asyncio.to_thread(check_writable)  # refuse before reading a byte of the body
    _refuse_pull_requests(create_pr)
    branch = revision_after(request, "commit", 4)
    limits = limits_of(platform.settings)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_upload_bytes:
        raise PayloadTooLarge(f"commit of {declared} bytes is over the limit of {limits.max_upload_bytes} bytes")
    staging = await asyncio.to_thread(spaces.staging_dir, platform)
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
        outcome, repo_id = await asyncio.to_thread(_apply, platform, user, repo_type, owner, name, branch, parsed)
    finally:
        await asyncio.to_thread(spaces.remove_tree, staging)
    url = repo_url(base_url(request, platform.settings), repo_type, repo_id)
    return JSONResponse({"success": True, "commitOid": outcome.sha, "commitUrl": f"{url}/commit/{outcome.sha}",
                         "hookOutput": "", "changed": outcome.changed, "buildId": outcome.build_id})


def _apply(platform: Platform, user: User, repo_type: str, owner: str, name: str, branch: str,
           parsed: ParsedCommit) -> tuple[CommitOutcome, str]:
    with platform.db.session() as session:
        space = spaces.get_writable(session, user, owner, name, repo_type)  # still there, still theirs
        header = parsed.header
        outcome = management.commit(platform, session, space, user, branch, parsed.additions, parsed.deletions,
                                    header.summary, header.description, header.parent_commit)
        return outcome, space.repo_id
