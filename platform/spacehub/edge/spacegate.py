"""Who may reach a private space's subdomain, decided in the proxy's hot path without blocking it.

A private space answers only a request that carries a platform token of someone allowed to read it: its
owner, a member of the organization that owns it, or an admin. Everyone else gets exactly the answer a missing
space gets, so its existence does not leak. Tokens come as `Authorization: Bearer sh_...` (curl, httpx,
huggingface_hub) or `X-HF-Authorization: Bearer ...` (gradio_client moves its token there so that the app's own
`Authorization` stays free); the proxy strips both before the app sees the request.

Verifying a token costs a database lookup, done in a thread; the answer (who it is, or that it is no one) is
cached by the token's SHA-256 for `token_cache_s`. A revoked token, a removed user or membership clears the cache
(`forget`, on the route channel's gate message, before the revoking call returns: `spacehub.routetable`); the expiry
is only the safety net for a message lost while Redis was away.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

from spacehub import accounts
from spacehub.access import Reader, reader_of
from spacehub.errors import Unauthorized
from spacehub.store.db import Database
from spacehub.store.models import User

MAX_CACHED = 10_000  # bound on remembered tokens and users: random tokens cannot grow the cache without end

_T = TypeVar("_T")


class PrivateSpace(Protocol):
    """What the gate needs to know of a space (gateway.SpaceEntry has it)."""

    @property
    def id(self) -> int: ...

    @property
    def owner(self) -> str: ...

    @property
    def private(self) -> bool: ...


def presented_tokens(headers: list[tuple[bytes, bytes]], token_prefix: bytes = b"sh_") -> list[str]:
    """The platform tokens a request carries, in the headers the proxy strips before the app sees them."""
    found = []
    for name, value in headers:
        key = name.lower()
        if key not in (b"authorization", b"x-hf-authorization"):
            continue
        scheme, _, secret = value.strip().partition(b" ")
        secret = secret.strip()
        if scheme.lower() != b"bearer" or not secret:
            continue
        # A Bearer token in `Authorization` may be the app's own: only the platform's kind is the platform's.
        if key == b"authorization" and not secret.startswith(token_prefix):
            continue
        found.append(secret.decode("latin-1"))
    return found


class _TimedCache:
    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[object, tuple[float, object]] = {}
        self._generation = 0  # bumped by `clear`: an answer looked up before it is not kept

    def clear(self) -> None:
        self._entries = {}
        self._generation += 1

    async def get(self, key: object, load: Callable[[], _T]) -> _T:
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]  # type: ignore[return-value]
        generation = self._generation
        value = await asyncio.to_thread(load)
        if generation != self._generation:
            return value  # read before an access change was applied: answer this request, remember nothing
        if len(self._entries) >= MAX_CACHED:
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            if len(self._entries) >= MAX_CACHED:
                self._entries.clear()
        self._entries[key] = (time.monotonic() + self.ttl_s, value)
        return value


class SpaceGate:
    def __init__(self, db: Database, cache_s: float, token_prefix: str = accounts.TOKEN_PREFIX,
                 cookie_user: Callable[[int, list[tuple[bytes, bytes]]], int | None] | None = None) -> None:
        self.db = db
        # The web UI's signed cookie scoped to one space's host (spaceauth): (space id, headers) -> user id.
        self.cookie_user = cookie_user
        self.token_prefix = token_prefix.encode()
        self._tokens = _TimedCache(cache_s)
        self._users = _TimedCache(cache_s)

    def forget(self) -> None:
        """Drop every cached answer: who may read what just changed (a token revoked, a membership removed)."""
        self._tokens.clear()
        self._users.clear()

    async def authorize_space_request(self, space: PrivateSpace, headers: list[tuple[bytes, bytes]]) -> bool:
        """May this request reach the space? Public spaces: always. Private ones: a reader's token.

        The one gate of a space's host. Another kind of credential (the web UI's signed cookie scoped to one
        space's host) plugs in here: resolve it to a user id and ask `user_may_read`.
        """
        if not space.private:
            return True
        for secret in presented_tokens(headers, self.token_prefix):
            caller = await self.token_caller(secret)
            if caller is not None and caller.may_read(space.owner):
                return True
        if self.cookie_user is not None:
            user_id = self.cookie_user(space.id, headers)
            if user_id is not None and await self.user_may_read(user_id, space.owner):
                return True
        return False

    async def token_caller(self, secret: str) -> Reader | None:
        """Who the token belongs to (None: no one), cached by its hash; looked up in a thread."""
        digest = hashlib.sha256(secret.encode()).digest()
        return await self._tokens.get(digest, lambda: self._lookup_token(secret))

    async def user_may_read(self, user_id: int, owner: str) -> bool:
        caller = await self._users.get(user_id, lambda: self._lookup_user(user_id))
        return caller is not None and caller.may_read(owner)

    def _lookup_token(self, secret: str) -> Reader | None:
        with self.db.session() as session:
            try:
                user, _token = accounts.authenticate_token(session, secret)
            except Unauthorized:
                return None
            return reader_of(session, user)

    def _lookup_user(self, user_id: int) -> Reader | None:
        with self.db.session() as session:
            user = session.get(User, user_id)
            return reader_of(session, user) if user is not None else None


