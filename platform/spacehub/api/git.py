"""git over smart HTTP: `git clone` / `git fetch` / `git push` of spaces (and model repos), Hub-style URLs.

    git clone http://localhost:8000/spaces/<owner>/<name>       (or .../<name>.git)
    git clone http://localhost:8000/<owner>/<name>              (a model repo)

Authentication is HTTP Basic with any user name and a spacehub token as the password (a Bearer token works
too). Access follows the API's rules: anyone reads a public repo; a private one is read only by its owner's
namespace (and admins); pushing needs write access to the namespace and a token whose role is not `read`.
An anonymous request for a repo it cannot read gets 401 (so git asks for credentials), whether or not the repo
exists; a signed-in one gets 404, the same answer as for a missing repo.

Errors here are `text/plain`, unlike the rest of the API: git shows a plain-text body to its user as `remote:`
lines and shows nothing of a JSON one. The `X-Error-Code` header is the same as everywhere.

A push that moves `main` ends like any upload: `commits.after_commit` records the revision and queues its build,
before the last bytes of git's answer go out, so the build exists when `git push` returns. While Redis, which
queues builds, cannot be reached, a push to a space is refused before git receives anything (503 with
Retry-After; git shows the reason as a `remote:` line), rather than landed unbuilt. Should Redis fail after the
ref moved, the push stands and the supervisor builds the new HEAD once Redis is back (`reconcile.heal_heads`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import redis
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse
from sqlalchemy.orm import Session
from starlette.types import Receive, Scope, Send

from spacehub import access, accounts, commits, ratelimit, repometa
from spacehub.context import Platform
from spacehub.errors import (
    Forbidden,
    InvalidInput,
    PayloadTooLarge,
    RepoNotFound,
    ServiceUnavailable,
    SpacehubError,
    Unauthorized,
)
from spacehub.githttp import (
    RECEIVE_PACK,
    SERVICES,
    UPLOAD_PACK,
    GitRpc,
    GitServer,
    advertisement_preamble,
    install_hooks,
)
from spacehub.pushcheck import PushLimits
from spacehub.repos import CommitResult
from spacehub.requestdeps import get_platform
from spacehub.store.models import Space, User

log = logging.getLogger(__name__)
router = APIRouter()

_REALM = 'Basic realm="spacehub", charset="UTF-8"'
_NO_CACHE = {"Cache-Control": "no-cache, max-age=0, must-revalidate", "Pragma": "no-cache",
             "Expires": "Fri, 01 Jan 1980 00:00:00 GMT"}


@dataclass(frozen=True)
class _Target:
    space_id: int
    git_dir: Path
    head: str | None  # main when the request came in


# Who is calling, and what they may do ------------------------------------------------------------------------


def _credential(request: Request) -> str | None:
    """The token of `Authorization: Basic` (the password, or the user name if there is no password) or Bearer."""
    bearer = accounts.bearer_credential(request.headers.get("authorization"))
    if bearer is not None:
        return bearer
    scheme, _, value = request.headers.get("authorization", "").strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "basic" and value:
        try:
            user, _, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise Unauthorized("malformed Basic credentials") from exc
        return password or user or None
    return None


def _authorize(platform: Platform, request: Request, repo_type: str, owner: str, name: str,
               write: bool, *, counted: bool = False) -> _Target:
    """The repo the caller may read (or, with `write`, push to); a `counted` push counts against the rate limit."""
    limiter = ratelimit.limiter_of(platform)
    try:
        with platform.db.session() as session:
            user, space = authorized_repo(session, request, limiter, repo_type, owner, name,
                                          "push" if write else None)
            if write and counted and user is not None:
                limiter.take("write", ratelimit.peer_of(request), user.name)
            if write and space.repo_type == "space":
                platform.redis.ping()  # a push to a space is built: refused while nothing could queue its build
            key = access.repo_key(space)
            return _Target(space_id=space.id, git_dir=platform.repos.git_dir(key),
                           head=platform.repos.head(key) if write else None)
    except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) as exc:
        retry = platform.settings.retry_after_s
        raise ServiceUnavailable(f"Redis, which queues builds, is unavailable ({exc}): nothing was pushed; try again "
                                 f"in {retry} s", retry_after_s=retry) from exc


def authorized_repo(session: Session, request: Request, limiter: ratelimit.RateLimiter, repo_type: str,
                    owner: str, name: str, write: str | None) -> tuple[User | None, Space]:
    """The caller and the repo they may read; with `write` (the verb: "push", "upload") one they may write to.

    The rule git and the LFS batch API share: a private repo and a missing one get the same answer.
    """
    user, role = caller_of(session, request, limiter)
    space = access.find_space(session, owner, _without_git_suffix(name), repo_type)
    if space is None or not access.can_read(session, user, space):
        if user is None:  # the same for a private repo and a missing one: say nothing about which
            raise Unauthorized("authentication required: use a spacehub token as the password")
        raise RepoNotFound(f"Repository not found: {owner}/{_without_git_suffix(name)}")
    if write is not None:
        if user is None:
            raise Unauthorized(f"{write}ing needs a spacehub token as the password")
        if role == "read" or not accounts.can_write(session, user, space.owner):
            raise Forbidden(f"you cannot {write} to {space.repo_id}")
    return user, space


def caller_of(session: Session, request: Request,
              limiter: ratelimit.RateLimiter) -> tuple[User | None, str | None]:
    """Who sent the request (Basic with the token as password, or Bearer) and the token's role; invalid tokens
    count against the caller's address (ratelimit)."""
    secret = _credential(request)
    if secret is None:
        return None, None
    user, token = ratelimit.authenticate_token(limiter, session, secret, ratelimit.peer_of(request))
    return user, token.role


def _without_git_suffix(name: str) -> str:
    return name.removesuffix(".git")  # names never end in .git (names.check_name)


def _server(platform: Platform, repo_type: str) -> GitServer:
    settings = platform.settings
    limits = PushLimits(max_file_bytes=settings.max_file_bytes, max_tree_bytes=settings.max_tree_bytes,
                        max_entries=settings.max_entries)
    return GitServer(hooks_dir=install_hooks(settings.run_dir / "git-hooks"), limits=limits,
                     max_push_bytes=settings.max_upload_bytes, base_env=platform.repos.git_env(),
                     check_space_config=repo_type == "space")


def _error(exc: SpacehubError) -> Response:
    headers = {"X-Error-Code": exc.code}
    if isinstance(exc, ratelimit.RateLimited | ServiceUnavailable):
        headers["Retry-After"] = str(exc.retry_after_s)
    if exc.status == 401:
        headers["WWW-Authenticate"] = _REALM
    return PlainTextResponse(exc.message + "\n", status_code=exc.status, headers=headers)


# After a push ----------------------------------------------------------------------------------------------------


class _Push:
    """One push's build request, made once: when git is done, or when the response ends some other way."""

    def __init__(self, platform: Platform, target: _Target) -> None:
        self.platform, self.target, self.done = platform, target, False

    async def queue_build(self) -> None:
        if self.done:
            return
        self.done = True
        try:
            await asyncio.to_thread(self._queue_build)
        except Exception:  # noqa: BLE001 - the push has landed: the reconciler builds a HEAD that has no build
            log.exception("queueing the build after a push to space %s failed; the supervisor builds it once it "
                          "can (SPACEHUB_LOST_JOB_S)", self.target.space_id)

    def _queue_build(self) -> None:
        """Queue the build of the pushed revision, as every upload does (nothing if main did not move)."""
        with self.platform.db.session() as session:
            space = session.get(Space, self.target.space_id)
            if space is None:
                return
            head = self.platform.repos.head(access.repo_key(space))
            if head is None or head == self.target.head:
                return
            if space.repo_type != "space":  # no build: the Hub's derived metadata (card, pipeline, tags)
                repometa.refresh(self.platform, space, head)
            commits.after_commit(self.platform, session, space, CommitResult(head, changed=True))


async def _answer(rpc: GitRpc, push: _Push | None) -> AsyncIterator[bytes]:
    """git's output, one chunk behind: after a push the build is queued before the last chunk goes out."""
    held: bytes | None = None
    async for chunk in rpc.output():
        if held is not None:
            yield held
        held = chunk
    await rpc.finish()
    if push is not None:
        await push.queue_build()
    if held is not None:
        yield held


class _GitResponse(StreamingResponse):
    """Streams git's answer; however the response ends (the client gone included), git is stopped."""

    def __init__(self, rpc: GitRpc, content: AsyncIterator[bytes], media_type: str,
                 push: _Push | None = None) -> None:
        super().__init__(content, media_type=media_type, headers=_NO_CACHE)
        self._rpc, self._push = rpc, push

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._rpc.abort()  # a no-op once git has exited
            if self._push is not None:
                await self._push.queue_build()  # git may have moved main before the client went away


# Routes -----------------------------------------------------------------------------------------------------------


def _add_routes(prefix: str, repo_type: str) -> None:
    @router.get(prefix + "/{owner}/{name}/info/refs", include_in_schema=False)
    async def info_refs(owner: str, name: str, request: Request, service: str | None = None,
                        platform: Platform = Depends(get_platform)) -> Response:
        if service not in SERVICES:
            return _error(Forbidden("only git's smart HTTP protocol is served: use git 1.6.6 or newer"))
        try:
            target = await asyncio.to_thread(_authorize, platform, request, repo_type, owner, name,
                                             service == RECEIVE_PACK)
        except SpacehubError as exc:
            return _error(exc)
        protocol = request.headers.get("git-protocol")
        rpc = await GitRpc.start(_server(platform, repo_type), service, target.git_dir, advertise=True,
                                 git_protocol=protocol)
        preamble = advertisement_preamble(service, protocol)

        async def body() -> AsyncIterator[bytes]:
            if preamble:
                yield preamble
            async for chunk in _answer(rpc, None):
                yield chunk

        return _GitResponse(rpc, body(), f"application/x-{service}-advertisement")

    async def rpc_call(service: str, owner: str, name: str, request: Request, platform: Platform) -> Response:
        try:
            if request.headers.get("content-type", "").split(";")[0].strip() != f"application/x-{service}-request":
                raise InvalidInput(f"a {service} request must have Content-Type application/x-{service}-request")
            target = await asyncio.to_thread(_authorize, platform, request, repo_type, owner, name,
                                             service == RECEIVE_PACK, counted=service == RECEIVE_PACK)
            server = _server(platform, repo_type)
            limit = server.max_request_bytes(service)
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise PayloadTooLarge(f"the request body is over the limit of {limit} bytes")
            encoding = request.headers.get("content-encoding", "").strip().lower()
            if encoding not in ("", "identity", "gzip", "x-gzip"):
                raise InvalidInput(f"unsupported Content-Encoding {encoding!r}")
        except SpacehubError as exc:
            return _error(exc)
        rpc = await GitRpc.start(server, service, target.git_dir, advertise=False,
                                 git_protocol=request.headers.get("git-protocol"))
        try:
            await rpc.feed(request.stream(), gzipped=encoding in ("gzip", "x-gzip"), max_bytes=limit)
        except SpacehubError as exc:
            await rpc.abort()
            return _error(exc)
        except BaseException:
            await rpc.abort()
            raise
        push = _Push(platform, target) if service == RECEIVE_PACK else None
        return _GitResponse(rpc, _answer(rpc, push), f"application/x-{service}-result", push)

    @router.post(prefix + "/{owner}/{name}/git-upload-pack", include_in_schema=False)
    async def upload_pack(owner: str, name: str, request: Request,
                          platform: Platform = Depends(get_platform)) -> Response:
        return await rpc_call(UPLOAD_PACK, owner, name, request, platform)

    @router.post(prefix + "/{owner}/{name}/git-receive-pack", include_in_schema=False)
    async def receive_pack(owner: str, name: str, request: Request,
                           platform: Platform = Depends(get_platform)) -> Response:
        return await rpc_call(RECEIVE_PACK, owner, name, request, platform)


_add_routes("/spaces", "space")
_add_routes("/datasets", "dataset")
_add_routes("", "model")
