"""git's smart HTTP protocol, served by git's own programs the way `git http-backend` runs them.

`upload-pack` (clone, fetch) and `receive-pack` (push) run in `--stateless-rpc` mode, one process per HTTP
request: `GET .../info/refs?service=...` runs them with `--advertise-refs`, `POST .../git-upload-pack` and
`POST .../git-receive-pack` feed them the request body and stream their answer back. Bodies stream in both
directions; nothing holds a pack in memory.

A request body is read to its end before the answer starts (the ASGI server's disconnect listener would
otherwise compete for it), while git's output meanwhile goes to a spool that stays in memory up to 1 MiB and
spills to disk after that; git answers a stateless request only once it has read it, so the spool holds
little more than progress lines. A body over its cap is refused with 413 before any answer starts.

Pushes are checked by `spacehub.pushcheck`, installed as receive-pack's pre-receive hook: git receives the pack
into a quarantine and moves no ref unless the hook agrees. git's own checks come first: `fsckObjects` (broken
objects, `.gitmodules` tricks), `maxInputSize` (the pack's size), no deletes, no non-fast-forward updates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import sys
import tempfile
import zlib
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

import spacehub
from spacehub.errors import PayloadTooLarge
from spacehub.pushcheck import SPACE_CONFIG_VARIABLE, PushLimits

log = logging.getLogger(__name__)

UPLOAD_PACK: Final = "git-upload-pack"
RECEIVE_PACK: Final = "git-receive-pack"
SERVICES: Final = (UPLOAD_PACK, RECEIVE_PACK)
# A fetch request is a list of wants and haves: far below this even for huge histories; a gzip bomb stops here.
MAX_FETCH_REQUEST_BYTES: Final = 64 * 1024 * 1024
# What a push body may carry besides the pack (capped by receive.maxInputSize): the ref commands and framing.
PUSH_COMMAND_SLACK_BYTES: Final = 1024 * 1024

_CHUNK = 64 * 1024
_SPOOL_MEMORY_BYTES = 1024 * 1024
_GIT_PROTOCOL = re.compile(r"[A-Za-z0-9=:.,_-]{1,256}")  # `version=2`, as the Git-Protocol header carries it
_STOP_GRACE_S = 5.0
_HOOK_SCRIPT = """#!/bin/sh
# Written by spacehub: every push is checked by spacehub.pushcheck before git moves a ref.
exec "$SPACEHUB_HOOK_PYTHON" -m spacehub.pushcheck
"""
_COMMON_CONFIG = ("core.fsmonitor=false", "gc.auto=0", "core.autocrlf=false")
_RECEIVE_CONFIG = (
    "receive.fsckObjects=true",
    # pushcheck refuses `.git` in every spelling with a clearer message than fsck's "hasDotgit".
    "receive.fsck.hasDotgit=ignore",
    "receive.denyNonFastForwards=true",
    "receive.denyDeletes=true",
    "receive.autogc=false",
    "receive.updateServerInfo=false",
    "receive.advertisePushOptions=false",
)


@dataclass(frozen=True)
class GitServer:
    """How this platform runs git's server programs."""

    hooks_dir: Path  # holds the pre-receive hook
    limits: PushLimits
    max_push_bytes: int  # the largest pack a push may send (receive.maxInputSize)
    base_env: dict[str, str]  # the RepoStore's clean git environment
    check_space_config: bool = False  # a space's repo: the hook checks README.md's front matter too

    def command(self, service: str, git_dir: Path, *, advertise: bool) -> list[str]:
        config = [*_COMMON_CONFIG]
        if service == RECEIVE_PACK:
            config += [f"core.hooksPath={self.hooks_dir}", *_RECEIVE_CONFIG,
                       f"receive.maxInputSize={self.max_push_bytes}"]
        else:
            config.append("core.hooksPath=/dev/null")
        options = [part for item in config for part in ("-c", item)]
        name = service.removeprefix("git-")
        return ["git", *options, name, "--stateless-rpc", *(["--advertise-refs"] if advertise else []),
                str(git_dir)]

    def env(self, git_protocol: str | None) -> dict[str, str]:
        env = {
            **self.base_env,
            **self.limits.as_env(),
            "SPACEHUB_HOOK_PYTHON": sys.executable,
            SPACE_CONFIG_VARIABLE: "1" if self.check_space_config else "0",
            # The hook imports spacehub from where this process did, whatever the install.
            "PYTHONPATH": str(Path(spacehub.__file__).resolve().parent.parent),
        }
        if git_protocol and _GIT_PROTOCOL.fullmatch(git_protocol):
            env["GIT_PROTOCOL"] = git_protocol
        return env

    def max_request_bytes(self, service: str) -> int:
        return self.max_push_bytes + PUSH_COMMAND_SLACK_BYTES if service == RECEIVE_PACK else MAX_FETCH_REQUEST_BYTES


def install_hooks(hooks_dir: Path) -> Path:
    """Write the pre-receive hook (idempotent, atomic); return the hooks folder."""
    hook = hooks_dir / "pre-receive"
    if hook.is_file() and hook.read_text() == _HOOK_SCRIPT and os.access(hook, os.X_OK):
        return hooks_dir
    hooks_dir.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(dir=hooks_dir, prefix=".pre-receive.")
    with os.fdopen(fd, "w") as out:
        out.write(_HOOK_SCRIPT)
    os.chmod(staging, 0o755)
    os.replace(staging, hook)
    return hooks_dir


def pkt_line(text: str) -> bytes:
    data = text.encode()
    return f"{len(data) + 4:04x}".encode() + data


def advertisement_preamble(service: str, git_protocol: str | None) -> bytes:
    """What precedes the ref advertisement of `info/refs` (nothing in protocol v2, as http-backend does)."""
    if service == UPLOAD_PACK and git_protocol and "version=2" in git_protocol.split(":"):
        return b""
    return pkt_line(f"# service={service}\n") + b"0000"


class GitRpc:
    """One run of upload-pack or receive-pack, for one HTTP request."""

    def __init__(self, process: asyncio.subprocess.Process, errors: IO[bytes], what: str) -> None:
        self._process = process
        self._errors = errors
        self._what = what
        self._spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY_BYTES)  # noqa: SIM115
        self._stdin_open = process.stdin is not None

    @classmethod
    async def start(cls, server: GitServer, service: str, git_dir: Path, *, advertise: bool,
                    git_protocol: str | None) -> GitRpc:
        errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed by finish()/abort()
        try:
            process = await asyncio.create_subprocess_exec(
                *server.command(service, git_dir, advertise=advertise),
                stdin=asyncio.subprocess.DEVNULL if advertise else asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=errors, cwd=git_dir, env=server.env(git_protocol),
                limit=_CHUNK)
        except BaseException:
            errors.close()
            raise
        return cls(process, errors, f"{service} {git_dir.name}")

    async def feed(self, body: AsyncIterable[bytes], *, gzipped: bool, max_bytes: int) -> None:
        """Send the whole request body to git (inflated if gzipped), at most `max_bytes` of it."""
        collector = asyncio.create_task(self._collect_output())
        try:
            total = 0
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None
            async for chunk in body:
                for piece in _inflated(inflater, chunk) if inflater else (chunk,):
                    total += len(piece)
                    if total > max_bytes:
                        raise PayloadTooLarge(f"the request body is over the limit of {max_bytes} bytes")
                    await self._write(piece)
            await self._close_stdin()
        finally:
            collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collector

    async def output(self) -> AsyncIterator[bytes]:
        """git's answer: what was spooled while the request was read, then the rest as it comes."""
        self._spool.seek(0)
        while chunk := self._spool.read(_CHUNK):
            yield chunk
        self._spool.close()
        assert self._process.stdout is not None
        while chunk := await self._process.stdout.read(_CHUNK):
            yield chunk

    async def finish(self) -> int:
        """Wait for git to exit; log what it said if it failed."""
        try:
            code = await self._process.wait()
            if code != 0:
                self._errors.seek(0)
                detail = self._errors.read(8192).decode("utf-8", "replace").strip()
                log.warning("git %s exited with %s: %s", self._what, code, detail)
            return code
        finally:
            self._close_files()

    async def abort(self) -> None:
        """Stop git (SIGTERM first: receive-pack then removes its quarantine) and wait for it."""
        if self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self._process.wait(), _STOP_GRACE_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self._process.kill()
                await self._process.wait()
        self._close_files()

    async def _collect_output(self) -> None:
        assert self._process.stdout is not None
        while chunk := await self._process.stdout.read(_CHUNK):
            self._spool.write(chunk)

    async def _write(self, data: bytes) -> None:
        if not self._stdin_open or self._process.stdin is None:
            return  # git stopped reading (it refused the request): drain the body, git's answer says why
        try:
            self._process.stdin.write(data)
            await self._process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            self._stdin_open = False

    async def _close_stdin(self) -> None:
        if self._process.stdin is not None and self._stdin_open:
            self._stdin_open = False
            self._process.stdin.close()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                await self._process.stdin.wait_closed()

    def _close_files(self) -> None:
        self._errors.close()
        self._spool.close()


def _inflated(inflater: zlib._Decompress, chunk: bytes) -> Iterator[bytes]:
    """Inflate one chunk in pieces of at most 64 KiB, lazily: a gzip bomb is counted before it is held."""
    data = chunk
    while data and not inflater.eof:
        piece = inflater.decompress(data, _CHUNK)
        if piece:
            yield piece
        data = inflater.unconsumed_tail
