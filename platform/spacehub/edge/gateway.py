"""Host rules of the one public port (design.md §5): which Host goes to the API, to a space, or nowhere.

Routes come from Redis (written by `spacehub.routetable` whenever a space's row changes) and are cached here with
what a label means when it has no route (no such space, building, paused...), from SQL, so the proxy's hot path
never waits on a database. A route message names one label: only that label's route and row are reloaded. The
whole tables are loaded at start, on each (re)subscription and every SPACEHUB_ROUTE_REFRESH_S as a safety net.
During a redeploy, a Gradio client stays on the revision it started on: responses of a Gradio space to a client
that does not carry it yet set a host-only cookie naming the revision that answered (gradio_client keeps the
cookies of its first request, a browser all of them), and while the old revision drains (a `RetiredApp` row), a
request with its cookie goes there, so the two requests of Gradio's two-step calls (queue join + data, call +
result) meet the same app.
A message with a nonce is acknowledged once applied, so the writer knows this process now answers by it
(`spacehub.routetable.publish_acked`); GATE_MESSAGE makes the gate forget the tokens and users it had checked.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from sqlalchemy import select

from spacehub.edge.spaceauth import SIGN_PARAM, SpaceAccess
from spacehub.edge.spacegate import SpaceGate
from spacehub.edge.wake import Waker
from spacehub.errors import SpacehubError
from spacehub.proxy.errors import ProxyError
from spacehub.proxy.routing import Route, Upstream
from spacehub.routetable import (
    ACK_KEY_TTL_S,
    GATE_MESSAGE,
    ROUTES_CHANNEL,
    ROUTES_KEY,
    UNPINNED_KEY,
    ack_key,
    parse_message,
)
from spacehub.secret import load_secret
from spacehub.settings import Settings
from spacehub.stages import Stage
from spacehub.store.db import Database
from spacehub.store.models import RetiredApp, Space

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpaceEntry:
    id: int
    repo_id: str
    stage: str
    private: bool
    message: str
    owner: str  # a private space opens to this namespace (and admins): spacegate.SpaceGate
    sdk: str = ""
    draining: tuple[str, ...] = ()  # upstreams of old revisions still finishing their clients' calls


PIN_COOKIE = b"spacehub-rev"
# The same pin for the platform's iframe, where the space's host is a third party: there a cookie needs
# `SameSite=None; Secure; Partitioned` (as spaceauth's), which cookie jars over plain http never send back.
FRAMED_PIN_COOKIE = b"spacehub-rev-framed"


def pin_value(space_id: int, upstream: str) -> str:
    """The revision pin's cookie value: names the upstream to this proxy only (it is checked against the space's
    own serving and draining upstreams, so a forged value leads nowhere else)."""
    return hashlib.sha256(f"{space_id}:{upstream}".encode()).hexdigest()[:20]


def _cookie(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() != b"cookie":
            continue
        for part in value.split(b";"):
            cookie_name, sep, cookie_value = part.strip().partition(b"=")
            if sep and cookie_name == name:
                return cookie_value.decode("latin-1")
    return None


def _json_route(status: int, message: str, code: str, **extra: object) -> Route:
    body = json.dumps({"error": message, **extra}).encode()
    return Route(upstream=None, status=status, body=body, extra_headers=(("X-Error-Code", code),))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _upstream(target: str) -> Upstream:
    if target.startswith("unix:"):
        return Upstream(unix_path=target[5:])
    host, _, port = target.rpartition(":")
    return Upstream(host=host, port=int(port))


class SpaceResolver:
    def __init__(self, settings: Settings, db: Database, redis_url: str, space_cache_s: float = 2.0) -> None:
        self.settings = settings
        self.db = db
        self.redis_url = redis_url
        self.api = _upstream(settings.api_listen) if settings.api_listen else Upstream(
            unix_path=str(settings.api_socket))
        self._api_route = Route(upstream=self.api)
        self._route_cache: dict[tuple[int, str], Route] = {}
        self._gradio_of: dict[str, SpaceEntry] | None = None  # the table `_gradio_ids_cached` was computed of
        self._gradio_ids_cached: frozenset[int] = frozenset()
        self.suffix = "." + settings.spaces_domain.lower()
        # Bumped whenever either table is replaced: the proxy remembers `resolve_cached`'s answers per Host value
        # while it stays the same (see `spacehub.proxy.routing.Resolver`).
        self.routes_version = 0
        self._routes: dict[str, str] = {}
        self._spaces: dict[str, SpaceEntry] = {}
        self._spaces_loaded = 0.0
        self.space_cache_s = space_cache_s
        self._tasks: list[asyncio.Task[None]] = []
        # Table loads one at a time: a whole-table load read before a change must not land after that change's
        # own reload (which would bring back, say, a deleted space until the next refresh).
        self._load_lock = asyncio.Lock()
        self.waker: Waker | None = None
        self._redis: aioredis.Redis | None = None
        # The web UI lets a private space's readers in from its page: a signed `?__sign=` in the iframe's URL,
        # swapped here for a cookie scoped to that one space's host, which the gate then accepts.
        self.access = SpaceAccess(settings, load_secret(settings))
        self.gate = SpaceGate(db, settings.token_cache_s, cookie_user=self.access.cookie_user)

    @property
    def routes(self) -> dict[str, str]:
        """label -> upstream (`host:port` or `unix:path`) of every space that gets traffic; replaced, never changed."""
        return self._routes

    @routes.setter
    def routes(self, table: dict[str, str]) -> None:
        self._routes = table
        self.routes_version += 1

    @property
    def spaces(self) -> dict[str, SpaceEntry]:
        """label -> what the proxy needs to know of the space; replaced, never changed."""
        return self._spaces

    @spaces.setter
    def spaces(self, table: dict[str, SpaceEntry]) -> None:
        self._spaces = table
        self.routes_version += 1

    async def start(self) -> None:
        self._redis = aioredis.Redis.from_url(self.redis_url)
        await self._load_routes()
        await self._load_spaces()
        self._tasks = [asyncio.create_task(self._watch_routes()), asyncio.create_task(self._refresh_loop())]
        # A space with no route that should serve (frozen, sleeping, starting) is woken and waited for: wake.py.
        # (Through methods: both tables are replaced, not updated, on each reload.)
        self.waker = Waker(self.settings, self._redis, route_of=self.routes_get, entry_of=self.space_entry,
                           refresh=self._load_spaces, space_route=self._space_route)

    async def close(self) -> None:
        if self.waker is not None:
            await self.waker.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._redis is not None:
            await self._redis.aclose()

    async def _load_routes(self) -> None:
        assert self._redis is not None
        async with self._load_lock:
            raw = await self._redis.hgetall(ROUTES_KEY)  # type: ignore[misc]
            self.routes = {_text(k): _text(v) for k, v in raw.items()}

    _ENTRY_COLUMNS = (Space.id, Space.owner, Space.name, Space.label, Space.stage, Space.private, Space.message,
                      Space.sdk)

    def _query_spaces(self, label: str | None = None, unpinned: frozenset[str] = frozenset()) -> dict[str, SpaceEntry]:
        """The rows of every space (or one label's), with the upstreams of their draining revisions that still
        hold pinned clients (retired apps not in `unpinned`, their row ids)."""
        query = select(*self._ENTRY_COLUMNS).where(Space.repo_type == "space")
        if label is not None:
            query = query.where(Space.label == label)
        with self.db.session() as session:
            rows = list(session.execute(query))
            retired = select(RetiredApp.id, RetiredApp.space_id, RetiredApp.handle)
            if label is not None:
                retired = retired.where(RetiredApp.space_id.in_([r.id for r in rows]))
            draining: dict[int, list[str]] = {}
            for row_id, space_id, handle in session.execute(retired):
                target = (handle or {}).get("target")
                if target and str(row_id) not in unpinned:
                    draining.setdefault(space_id, []).append(str(target))
            return {r.label: SpaceEntry(r.id, f"{r.owner}/{r.name}", str(r.stage), r.private, r.message or "",
                                        r.owner, r.sdk or "", tuple(draining.get(r.id, ()))) for r in rows}

    async def _reload_label(self, label: str) -> None:
        """One space changed (a route message names it): reload its route and its row, nothing else."""
        assert self._redis is not None
        async with self._load_lock:
            target = await self._redis.hget(ROUTES_KEY, label)  # type: ignore[misc]
            found = await asyncio.to_thread(self._query_spaces, label, await self._unpinned())
            routes, spaces = dict(self._routes), dict(self._spaces)  # replaced, never changed: see the properties
            if target is None:
                routes.pop(label, None)
            else:
                routes[label] = _text(target)
            spaces.pop(label, None)
            spaces.update(found)
            self._routes, self._spaces = routes, spaces
            self.routes_version += 1

    async def _load_spaces(self) -> None:
        async with self._load_lock:
            self.spaces = await asyncio.to_thread(self._query_spaces, None, await self._unpinned())
            self._spaces_loaded = time.monotonic()

    async def _unpinned(self) -> frozenset[str]:
        assert self._redis is not None
        return frozenset(_text(k) for k in await self._redis.hkeys(UNPINNED_KEY))  # type: ignore[misc]

    async def _apply_message(self, text: str) -> None:
        subject, nonce = parse_message(text)
        if subject == GATE_MESSAGE:
            self.gate.forget()
        else:
            await self._reload_label(subject)
        if nonce is not None:
            assert self._redis is not None
            key = ack_key(nonce)
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.rpush(key, 1)
                pipe.expire(key, ACK_KEY_TTL_S)
                await pipe.execute()

    async def _watch_routes(self) -> None:
        while True:
            try:
                assert self._redis is not None
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(ROUTES_CHANNEL)
                    await self._load_routes()  # nothing published while we were not listening is lost
                    await self._load_spaces()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            await self._apply_message(_text(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep serving on the cache; retry the subscription
                log.exception("route watcher failed; retrying")
                await asyncio.sleep(1)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.route_refresh_s)
            try:
                await self._load_routes()
                await self._load_spaces()
            except Exception:  # noqa: BLE001
                log.exception("route refresh failed")

    accepts_target = True  # the proxy passes the request target: see `_sign_exchange`

    async def __call__(self, host: str, headers: list[tuple[bytes, bytes]], target: bytes = b"/") -> Route:
        """The route of a request; a platform error on the way (the gate, a wake) is answered as the proxy's own
        (the proxy knows nothing of the platform's hierarchy)."""
        try:
            return await self._resolve(host, headers, target)
        except SpacehubError as exc:
            raise ProxyError(exc.message, status=exc.status, code=exc.code) from exc

    async def _resolve(self, host: str, headers: list[tuple[bytes, bytes]], target: bytes) -> Route:
        if host in self.settings.platform_hosts:
            return self._api_route
        if not host.endswith(self.suffix):
            return _json_route(421, f"this server does not serve the host {host!r}", "MisdirectedRequest")
        label = host[: -len(self.suffix)]
        entry = self.spaces.get(label)
        if entry is None and time.monotonic() - self._spaces_loaded > 0.5:
            await self._load_spaces()  # a space created a moment ago
            entry = self.spaces.get(label)
        if entry is not None and entry.private and SIGN_PARAM.encode() in target:
            exchanged = await self._sign_exchange(entry, target)
            if exchanged is not None:
                return exchanged
        # A private space is, to anyone not allowed in, exactly a missing one (whatever its stage).
        if entry is None or not await self.gate.authorize_space_request(entry, headers):
            return _json_route(404, f"no space at {host}", "RepoNotFound")
        upstream = self.routes.get(label)
        if upstream is not None:
            if entry.draining:
                upstream = self._pinned(entry, headers) or upstream
            return self._space_route(entry.id, upstream)
        if self.waker is not None:
            woken = await self.waker.route(entry, label, headers, target)
            if woken is not None:
                return woken
            entry = self.spaces.get(label, entry)  # as fresh as the wait left it
        return self._not_serving(entry)

    def routes_get(self, label: str) -> str | None:
        return self.routes.get(label)

    def space_entry(self, label: str) -> SpaceEntry | None:
        return self.spaces.get(label)

    def resolve_cached(self, host: str, headers: list[tuple[bytes, bytes]]) -> Route | None:
        """The proxy's synchronous fast path: the route when the in-memory tables alone decide it (the API's
        hosts, a public space with a route), else None, and the proxy awaits `__call__` instead.

        A route returned here depends on `host` alone and holds until a table is next replaced (which bumps
        `routes_version`): the proxy reuses it for the same Host value until then."""
        if host in self.settings.platform_hosts:
            return self._api_route
        if not host.endswith(self.suffix):
            return None
        label = host[: -len(self.suffix)]
        entry = self.spaces.get(label)
        if entry is None or entry.private or entry.draining:  # (a redeploy's pins depend on the request's cookie)
            return None
        upstream = self.routes.get(label)
        return self._space_route(entry.id, upstream) if upstream is not None else None

    def _space_route(self, space_id: int, upstream: str) -> Route:
        # One Route per (space, upstream), built once: the hot path only looks it up.
        key = (space_id, upstream)
        route = self._route_cache.get(key)
        if route is None:
            if len(self._route_cache) >= 4096:  # upstreams of redeployed spaces: never let them pile up
                self._route_cache.clear()
            # Gradio's clients make calls of two requests: their answers pin the client to this revision.
            pin = carried = b""
            if space_id in self._gradio_ids:
                value = pin_value(space_id, upstream).encode()
                pin = b"Set-Cookie: %s=%s; Path=/; HttpOnly; SameSite=Lax\r\n" % (PIN_COOKIE, value)
                if self.settings.spaces_scheme == "https" or self.settings.spaces_domain.endswith("localhost"):
                    pin += b"Set-Cookie: %s=%s; Path=/; HttpOnly; Secure; SameSite=None; Partitioned\r\n" % (
                        FRAMED_PIN_COOKIE, value)
                # A client that sent the pin back (under either name) keeps it: most answers then need no cookie
                # and pass on as the app wrote them.
                carried = b"=" + value
            route = self._route_cache[key] = Route(upstream=_upstream(upstream), space_id=space_id, is_space=True,
                                                   added_headers=pin, added_unless=carried)
        return route

    @property
    def _gradio_ids(self) -> frozenset[int]:
        spaces = self._spaces
        if self._gradio_of is not spaces:
            self._gradio_ids_cached = frozenset(e.id for e in spaces.values() if e.sdk == "gradio")
            self._gradio_of = spaces
        return self._gradio_ids_cached

    def _pinned(self, entry: SpaceEntry, headers: list[tuple[bytes, bytes]]) -> str | None:
        """The draining upstream this request's client is pinned to, if it is one."""
        values = {_cookie(headers, PIN_COOKIE), _cookie(headers, FRAMED_PIN_COOKIE)} - {None}
        for upstream in entry.draining:
            if pin_value(entry.id, upstream) in values:
                return upstream
        return None

    async def _sign_exchange(self, entry: SpaceEntry, target: bytes) -> Route | None:
        """A valid `?__sign=` of a reader: redirect to the same URL without it, setting the space's cookie."""
        exchanged = self.access.exchange(entry.id, target)
        if exchanged is None:
            return None
        user_id, clean_target, cookie = exchanged
        if not await self.gate.user_may_read(user_id, entry.owner):
            return None
        return Route(upstream=None, status=303, body=b'{"redirect": true}', extra_headers=(
            ("Location", clean_target), ("Set-Cookie", cookie), ("Cache-Control", "no-store")))

    def _not_serving(self, entry: SpaceEntry) -> Route:
        stage = entry.stage
        if stage in (Stage.BUILDING, Stage.APP_STARTING, Stage.RUNNING_BUILDING, Stage.RUNNING_APP_STARTING):
            route = _json_route(503, f"space {entry.repo_id} is starting ({stage})", "SpaceNotReady", stage=stage)
            return Route(upstream=None, status=503, body=route.body,
                         extra_headers=route.extra_headers + (("Retry-After", "5"),))
        detail = f": {entry.message}" if entry.message else ""
        return _json_route(503, f"space {entry.repo_id} is not running ({stage}){detail}", "SpaceNotRunning",
                           stage=stage)
