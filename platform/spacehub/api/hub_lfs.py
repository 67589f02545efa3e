"""The LFS batch API, for huggingface_hub's uploads and for `git lfs` (push, clone, pull), and its transfers.

    POST /{owner}/{name}.git/info/lfs/objects/batch            (models; also /spaces/... and /datasets/...)

Authentication is the caller's token, as `Authorization: Bearer` (huggingface_hub) or as the password of HTTP
Basic (git's credential helper). `upload` needs write access to the repo; `download` read access, and only
objects the repo's branches or tags point to are handed out.

The actions are signed links (`/api/lfs/objects/<token>`) that name the object, its declared size and the
uploader, and expire after `lfs_link_ttl_s`; huggingface_hub sends its PUTs without any credential, so the link
is the credential. Transfers:

- `basic`: one PUT of the whole object.
- `multipart` (huggingface_hub, objects over `lfs_chunk_bytes`): `header.chunk_size` and part links `"1"`,
  `"2"`, ...; each part is written at its offset as it streams in, then a POST to the upload link completes it.
- `verify`: POST `{oid, size}`; 200 once the object is stored and the caller uploaded it.

Bytes are hashed as they arrive (a multipart object once complete); an object whose sha256 or size is not the
declared one is refused and nothing is kept. A completed upload grants its uploader the object: only then may
their commits name it (`spacehub.lfs.check_usable`). Objects already stored are deduplicated, but a caller who
holds no grant and whose repo does not hold the object must still send the bytes: a hash is not proof.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from itsdangerous import BadSignature, URLSafeTimedSerializer
from pydantic import BaseModel, ConfigDict, Field

from spacehub import access, lfs, ratelimit
from spacehub.api.git import authorized_repo
from spacehub.api.hubpaths import base_url
from spacehub.context import Platform
from spacehub.errors import Forbidden, InvalidInput, NotFound, SpacehubError
from spacehub.objectstore import OID, Staged
from spacehub.requestdeps import get_platform
from spacehub.secret import load_secret
from spacehub.store.models import Space, User

router = APIRouter()

LFS_MEDIA_TYPE = "application/vnd.git-lfs+json"
MAX_BATCH_OBJECTS = 1000
_FLUSH_BYTES = 1024 * 1024  # body bytes written to the staged object at a time (off the event loop)
_SALT = "spacehub-lfs-transfer"


class LfsObject(BaseModel):
    model_config = ConfigDict(extra="ignore")
    oid: str
    size: int


class Batch(BaseModel):
    model_config = ConfigDict(extra="ignore")
    operation: str
    transfers: list[str] = Field(default_factory=lambda: ["basic"])
    objects: list[LfsObject] = Field(default_factory=list)
    hash_algo: str = "sha256"


def _lfs_error(exc: SpacehubError) -> JSONResponse:
    headers = {"X-Error-Code": exc.code}
    if exc.status == 401:
        headers["LFS-Authenticate"] = 'Basic realm="spacehub"'
        headers["WWW-Authenticate"] = 'Basic realm="spacehub"'
    return JSONResponse({"message": exc.message, "error": exc.message}, status_code=exc.status,
                        headers=headers, media_type=LFS_MEDIA_TYPE)


def _signer(platform: Platform) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(load_secret(platform.settings), salt=_SALT)


def _signed(platform: Platform, claims: dict[str, Any]) -> str:
    return str(_signer(platform).dumps(claims))


def _claims(platform: Platform, token: str, operation: str) -> dict[str, Any]:
    try:
        claims = _signer(platform).loads(token, max_age=int(platform.settings.lfs_link_ttl_s))
    except BadSignature:
        raise Forbidden("this LFS link is invalid or has expired: ask the batch API for a new one") from None
    if not isinstance(claims, dict) or claims.get("op") != operation:
        raise Forbidden("this LFS link is not for this operation")
    return claims


# The batch API ------------------------------------------------------------------------------------------------


def _authorize(platform: Platform, request: Request, repo_type: str, owner: str, name: str,
               write: bool) -> tuple[User | None, Space]:
    with platform.db.session() as session:
        user, space = authorized_repo(session, request, ratelimit.limiter_of(platform), repo_type, owner, name,
                                      "upload" if write else None)
        session.expunge_all()
        return user, space


def _batch(platform: Platform, request: Request, repo_type: str, owner: str, name: str, body: Batch) -> JSONResponse:
    if body.operation not in ("upload", "download"):
        raise InvalidInput(f"operation must be 'upload' or 'download' (got {body.operation!r})")
    if body.hash_algo != "sha256":
        raise InvalidInput("only sha256 object ids are supported")
    if len(body.objects) > MAX_BATCH_OBJECTS:
        raise InvalidInput(f"at most {MAX_BATCH_OBJECTS} objects per batch")
    upload = body.operation == "upload"
    if upload and not ({"basic", "multipart"} & set(body.transfers)):
        raise InvalidInput("spacehub offers the 'basic' and 'multipart' transfers")
    user, space = _authorize(platform, request, repo_type, owner, name, write=upload)
    key = access.repo_key(space)
    base = base_url(request, platform.settings)
    held: set[str] | None = None  # the repo's objects, read once if needed

    def repo_holds(oid: str) -> bool:
        nonlocal held
        if held is None:
            held = lfs.repo_oids(platform, key) if platform.repos.head(key) is not None or \
                platform.repos.refs(key)["branches"] else set()
        return oid in held

    multipart = upload and "multipart" in body.transfers
    used_multipart = False
    with platform.db.session() as session:
        granted = lfs.granted(session, user, (o.oid for o in body.objects)) if user is not None else set()
    answers = []
    for item in body.objects:
        answer: dict[str, Any] = {"oid": item.oid, "size": item.size}
        if not OID.fullmatch(item.oid) or item.size < 0:
            answer["error"] = {"code": 422, "message": "oid must be a sha256 (64 lower-case hex) and size >= 0"}
        elif upload:
            assert user is not None
            if item.size > platform.settings.lfs_max_file_bytes:
                answer["error"] = {"code": 422, "message": f"object is over the limit of "
                                   f"{platform.settings.lfs_max_file_bytes} bytes"}
            elif platform.objects.size(item.oid) == item.size and (item.oid in granted or repo_holds(item.oid)):
                if item.oid not in granted:  # the repo holds it: the caller may write the repo, so may use it
                    lfs.grant(platform, user.id, item.oid)
                platform.objects.touch(item.oid)  # about to be committed: keep it out of garbage collection
            else:
                answer["authenticated"] = True
                parts = multipart and item.size > platform.settings.lfs_chunk_bytes
                used_multipart |= parts
                answer["actions"] = _upload_actions(platform, base, user.id, item, parts)
        else:
            stored = platform.objects.size(item.oid)
            if stored is None or not repo_holds(item.oid):
                answer["error"] = {"code": 404, "message": "object not found in this repository"}
            else:
                token = _signed(platform, {"op": "get", "oid": item.oid})
                answer["authenticated"] = True
                answer["actions"] = {"download": {"href": f"{base}/api/lfs/objects/{token}",
                                                  "expires_in": int(platform.settings.lfs_link_ttl_s)}}
        answers.append(answer)
    transfer = "multipart" if used_multipart else "basic"
    return JSONResponse({"transfer": transfer, "objects": answers, "hash_algo": "sha256"},
                        media_type=LFS_MEDIA_TYPE)


def _upload_actions(platform: Platform, base: str, user_id: int, item: LfsObject, parts: bool) -> dict[str, Any]:
    ttl = int(platform.settings.lfs_link_ttl_s)
    verify = _signed(platform, {"op": "verify", "oid": item.oid, "size": item.size, "uid": user_id})
    actions: dict[str, Any] = {"verify": {"href": f"{base}/api/lfs/verify/{verify}", "expires_in": ttl}}
    if not parts:
        token = _signed(platform, {"op": "put", "oid": item.oid, "size": item.size, "uid": user_id})
        actions["upload"] = {"href": f"{base}/api/lfs/objects/{token}", "expires_in": ttl}
        return actions
    chunk = platform.settings.lfs_chunk_bytes
    upload_id = platform.objects.stage(item.size).upload_id
    token = _signed(platform, {"op": "parts", "oid": item.oid, "size": item.size, "uid": user_id,
                               "up": upload_id, "chunk": chunk})
    header: dict[str, str] = {"chunk_size": str(chunk)}
    for number in range(1, math.ceil(item.size / chunk) + 1):
        header[str(number)] = f"{base}/api/lfs/objects/{token}/{number}"
    actions["upload"] = {"href": f"{base}/api/lfs/objects/{token}", "header": header, "expires_in": ttl}
    return actions


def _add_batch_route(prefix: str, repo_type: str) -> None:
    @router.post(prefix + "/{owner}/{name}/info/lfs/objects/batch", include_in_schema=False)
    async def batch(owner: str, name: str, request: Request,
                    platform: Platform = Depends(get_platform)) -> Response:
        try:
            try:
                body = Batch.model_validate_json(await request.body())
            except ValueError as exc:
                raise InvalidInput(f"malformed LFS batch request: {exc}") from None
            return await asyncio.to_thread(_batch, platform, request, repo_type, owner, name, body)
        except SpacehubError as exc:
            return _lfs_error(exc)


_add_batch_route("/spaces", "space")
_add_batch_route("/datasets", "dataset")
_add_batch_route("", "model")


# Transfers -----------------------------------------------------------------------------------------------------


async def _receive(request: Request, write: Any) -> str:
    """Stream the body into `write` (off the event loop, a MiB at a time); return the body's sha256."""
    hasher = hashlib.sha256()
    pending = bytearray()
    async for chunk in request.stream():
        pending += chunk
        hasher.update(chunk)
        if len(pending) >= _FLUSH_BYTES:
            await asyncio.to_thread(write, bytes(pending))
            pending.clear()
    if pending:
        await asyncio.to_thread(write, bytes(pending))
    return hasher.hexdigest()


@router.put("/api/lfs/objects/{token}", include_in_schema=False)
async def put_object(token: str, request: Request, platform: Platform = Depends(get_platform)) -> Response:
    try:
        claims = _claims(platform, token, "put")
        staged = platform.objects.stage(int(claims["size"]))
        try:
            await _receive(request, staged.write)
            await asyncio.to_thread(staged.finish, claims["oid"], int(claims["size"]))
        except BaseException:
            staged.abort()
            raise
        await asyncio.to_thread(lfs.grant, platform, int(claims["uid"]), claims["oid"])
    except SpacehubError as exc:
        return _lfs_error(exc)
    return JSONResponse({}, media_type=LFS_MEDIA_TYPE)


@router.put("/api/lfs/objects/{token}/{part}", include_in_schema=False)
async def put_part(token: str, part: int, request: Request, platform: Platform = Depends(get_platform)) -> Response:
    try:
        claims = _claims(platform, token, "parts")
        size, chunk = int(claims["size"]), int(claims["chunk"])
        if part < 1 or part > math.ceil(size / chunk):
            raise InvalidInput(f"part {part} does not exist: the object has {math.ceil(size / chunk)} parts")
        staged: Staged = platform.objects.stage(size, claims["up"])
        start, end = (part - 1) * chunk, min(part * chunk, size)
        offset = start

        def write(data: bytes) -> None:
            nonlocal offset
            if offset + len(data) > end:
                raise InvalidInput(f"part {part} is longer than {end - start} bytes")
            staged.write_at(offset, data)
            offset += len(data)

        digest = await _receive(request, write)
        if offset != end:
            raise InvalidInput(f"part {part} is {offset - start} bytes, not {end - start}")
    except SpacehubError as exc:
        return _lfs_error(exc)
    return Response(status_code=200, headers={"ETag": f'"{digest}"'})


class Completion(BaseModel):
    model_config = ConfigDict(extra="ignore")
    oid: str
    parts: list[dict[str, Any]] = Field(default_factory=list)


@router.post("/api/lfs/objects/{token}", include_in_schema=False)
async def complete_parts(token: str, body: Completion, platform: Platform = Depends(get_platform)) -> Response:
    try:
        claims = _claims(platform, token, "parts")
        if body.oid != claims["oid"]:
            raise InvalidInput("the completion names another object than its upload link")
        size = int(claims["size"])
        if len(body.parts) != math.ceil(size / int(claims["chunk"])):
            raise InvalidInput("the completion does not list every part")
        staged = platform.objects.stage(size, claims["up"])
        await asyncio.to_thread(staged.finish, claims["oid"], size)
        await asyncio.to_thread(lfs.grant, platform, int(claims["uid"]), claims["oid"])
    except SpacehubError as exc:
        return _lfs_error(exc)
    return JSONResponse({}, media_type=LFS_MEDIA_TYPE)


@router.post("/api/lfs/verify/{token}", include_in_schema=False)
def verify(token: str, platform: Platform = Depends(get_platform)) -> Response:
    try:
        claims = _claims(platform, token, "verify")
        stored = platform.objects.size(claims["oid"])
        if stored is None or stored != int(claims["size"]):
            raise NotFound(f"object {claims['oid']} is not stored (the upload did not complete)")
        with platform.db.session() as session:
            user = session.get(User, int(claims["uid"]))
            if user is None or claims["oid"] not in lfs.granted(session, user, [claims["oid"]]):
                raise NotFound(f"object {claims['oid']} was not uploaded by you")
    except SpacehubError as exc:
        return _lfs_error(exc)
    return JSONResponse({}, media_type=LFS_MEDIA_TYPE)


@router.get("/api/lfs/objects/{token}", include_in_schema=False)
def get_object(token: str, platform: Platform = Depends(get_platform)) -> Response:
    try:
        claims = _claims(platform, token, "get")
        size = platform.objects.size(claims["oid"])
        if size is None:
            raise NotFound(f"object {claims['oid']} is not stored")
    except SpacehubError as exc:
        return _lfs_error(exc)
    return StreamingResponse(_iterate(platform, claims["oid"]), media_type="application/octet-stream",
                             headers={"Content-Length": str(size), "ETag": f'"{claims["oid"]}"'})


async def _iterate(platform: Platform, oid: str) -> AsyncIterator[bytes]:
    chunks = platform.objects.read(oid)
    while True:
        chunk = await asyncio.to_thread(next, chunks, None)
        if chunk is None:
            return
        yield chunk
