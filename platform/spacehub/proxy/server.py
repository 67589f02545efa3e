"""The public listener: accepts client connections and serves each request on them in turn.

Per request: parse (strictly), ask the resolver where it goes, rewrite the headers, and either answer
locally or forward it. Every request on a keep-alive connection goes through all of that, not just the first.

A client connection is an `asyncio.Protocol` (`connection.ClientConnection`) that parses what it receives at
once, in `data_received`, and hands each head to `ProxyServer.begin` the moment it is complete:
  - a request without a body (almost all of them) is relayed inside the socket callbacks (`relay.Relay`): no
    task and no event-loop round trip, as long as the route is known at once (the resolver's optional
    synchronous `resolve_cached`, see `routing.Resolver`) and a pooled upstream connection is free; otherwise
    a short task awaits the resolver or opens the connection, then the relay takes over;
  - a request with a body, or an upgrade, is served by a task (`exchange.Exchange`), which streams the body
    upstream as it arrives and tunnels an upgraded connection.
Pipelined requests wait, parsed, until the response before them has been sent.

What the platform learns of the requests: `activity=RequestCounter()` (see `activity`: requests in flight and
ended per space, which `spacehub serve` publishes for sleep, freeze and drains) and `traffic=TrafficCounter()`
(requests, bytes and durations per space, for /metrics, see `traffic`), both called directly on the request path.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from .activity import RequestCounter
from .connection import ClientConnection
from .errors import BadRequest, ClientGone, ProxyError
from .exchange import Exchange
from .headers import CredentialRules, error_response, reason_phrase, simple_response, upstream_request_head
from .http1 import RequestHead, RequestReader
from .pool import UpstreamPool
from .relay import Relay
from .resolvers import cached_resolver, target_resolver, versioned_routes
from .routing import Resolver, Route
from .traffic import TrafficCounter

logger: Final = logging.getLogger(__name__)

_MAX_KNOWN_HOSTS: Final = 4096
_clock: Final = time.monotonic  # bound once: read twice per request


class ProxyServer:
    # Tunables kept out of the constructor's fixed signature; set them on the instance before `start()`.
    head_timeout_s: float = 75.0  # a client must send a full request head within this (idle keep-alive included)
    connect_timeout_s: float = 10.0  # connecting to an upstream
    backlog: int = 1024

    def __init__(
        self,
        resolver: Resolver,
        *,
        scheme: str = "http",
        platform_token_prefix: str = "sh_",
        session_cookie: str = "spacehub_session",
        activity: RequestCounter | None = None,
        traffic: TrafficCounter | None = None,
        upstream_idle_s: float = 3.0,
        max_header_bytes: int = 65536,
    ) -> None:
        self._resolver = resolver
        # The resolver's optional abilities (resolvers.py), found once here.
        self._target_resolver = target_resolver(resolver)
        cached = cached_resolver(resolver)
        self._resolve_cached: Callable[[str, list[tuple[bytes, bytes]]], Route | None] | None = (
            cached.resolve_cached if cached is not None else None
        )
        # Routes `resolve_cached` gave, by raw Host header value, while the resolver's `routes_version` holds
        # (resolvers.VersionedRoutes): most requests then cost one dict lookup to route.
        self._versions = versioned_routes(resolver) if cached is not None else None
        self._known_routes: dict[bytes, Route] = {}
        self._known_version = -1
        self._scheme = scheme.encode("ascii")
        self._credential_rules = CredentialRules(
            token_prefix=platform_token_prefix.encode(), session_cookie=session_cookie.encode()
        )
        self._activity = activity
        self._traffic = traffic
        self._upstream_idle_s = upstream_idle_s
        self.max_header_bytes = max_header_bytes
        self._pool: UpstreamPool | None = None
        self._server: asyncio.Server | None = None
        self.connections: set[ClientConnection] = set()  # kept by the connections themselves
        self.draining = False  # stopping: connections close after the exchange in flight instead of waiting

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> None:
        """Bind and start accepting (`port=0`: any free port, see `.port`). `reuse_port`: several processes
        share the port (SO_REUSEPORT; the kernel spreads connections among them)."""
        loop = asyncio.get_running_loop()
        self._pool = UpstreamPool(idle_s=self._upstream_idle_s, connect_timeout_s=self.connect_timeout_s)
        self._server = await loop.create_server(
            lambda: ClientConnection(self), host, port, reuse_address=True, reuse_port=reuse_port or None,
            backlog=self.backlog
        )

    @property
    def port(self) -> int:
        # Untyped: uvloop's servers give a list where asyncio's typing says tuple (checked when compiled).
        server: Any = self._server
        sockets = server.sockets if server is not None else None
        if not sockets:
            raise RuntimeError("the proxy is not started")
        return int(sockets[0].getsockname()[1])

    @property
    def pool(self) -> UpstreamPool:
        if self._pool is None:
            raise RuntimeError("the proxy is not started")
        return self._pool

    @property
    def open_connections(self) -> int:
        """Client connections being served right now (for metrics and tests)."""
        return len(self.connections)

    async def drain(self, grace_s: float, poll_s: float = 0.05) -> int:
        """Stop accepting and let the exchanges in flight (streams included) finish, for at most `grace_s`.

        Idle keep-alive connections close at once, busy ones after their exchange. Returns how many
        connections were still busy when the grace ran out (`close` then cuts them)."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            if not conn.busy:
                conn.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        while any(conn.busy for conn in self.connections) and loop.time() < deadline:
            await asyncio.sleep(poll_s)
        return sum(1 for conn in self.connections if conn.busy)

    async def close(self) -> None:
        """Stop accepting, end every client connection and close pooled upstream connections."""
        if self._server is not None:
            self._server.close()
        connections = list(self.connections)
        tasks = [task for conn in connections for task in conn.shut_down()]
        await asyncio.gather(*tasks, return_exceptions=True)
        for conn in connections:
            conn.close()
        self.connections.clear()
        if self._pool is not None:
            self._pool.close()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    # One request (ClientConnection calls `begin` with each complete head, one at a time)

    def begin(self, conn: ClientConnection, head: RequestHead) -> None:
        """Start serving `head`; the connection hears of the end through `conn.exchange_done(keep_alive)`."""
        if self._traffic is not None:
            conn.started = _clock()
        if not head.plain:  # a body or an upgrade: streamed by a task
            conn.task = asyncio.get_running_loop().create_task(self._serve_with_body(conn, head))
            return
        host = head.host
        versions = self._versions
        if versions is not None and host is not None:
            version = versions.routes_version
            if version != self._known_version:
                self._known_routes.clear()
                self._known_version = version
            known = self._known_routes.get(host)
            if known is not None:
                self._relay(conn, head, known)
                return
        resolve_cached = self._resolve_cached
        if resolve_cached is not None:
            try:
                route = resolve_cached(_routing_host(host), head.headers)
                if route is not None and not isinstance(route, Route):
                    raise TypeError(f"the resolver returned {route!r}, not a Route")
                if route is not None and versions is not None and host is not None:
                    if len(self._known_routes) >= _MAX_KNOWN_HOSTS:  # Host values are the client's to choose
                        self._known_routes.clear()
                    self._known_routes[host] = route
            except ProxyError as exc:
                conn.exchange_done(self.answer_error(conn, head, exc.status, exc.message, exc.code))
                return
            except Exception:
                logger.exception("proxy: resolver failed for host %r", head.host)
                conn.exchange_done(self.answer_error(conn, head, 500, "route lookup failed", "InternalError"))
                return
            if route is not None:
                self._relay(conn, head, route)
                return
        conn.task = asyncio.get_running_loop().create_task(self._resolve_then_relay(conn, head))

    async def _resolve_then_relay(self, conn: ClientConnection, head: RequestHead) -> None:
        try:
            route = await self._resolve(head, cached_tried=self._resolve_cached is not None)
        except asyncio.CancelledError:
            conn.exchange_done(False)
            raise
        except ProxyError as exc:
            conn.exchange_done(self.answer_error(conn, head, exc.status, exc.message, exc.code))
            return
        except Exception:
            logger.exception("proxy: resolver failed for host %r", head.host)
            conn.exchange_done(self.answer_error(conn, head, 500, "route lookup failed", "InternalError"))
            return
        conn.task = None
        try:
            self._relay(conn, head, route)
        except Exception:  # a bug: the callback path would log it and drop the connection, so do the same here
            logger.exception("proxy: connection from %s failed", conn.address.decode())
            conn.abort()
            if conn.relay is not None:
                conn.relay.abandon()
            else:
                conn.exchange_done(False)

    def _relay(self, conn: ClientConnection, head: RequestHead, route: Route) -> None:
        if route.upstream is None:
            conn.exchange_done(self._answer_locally(conn, head, route))
            return
        request_bytes = upstream_request_head(
            head,
            client_address=conn.address,
            scheme=self._scheme,
            credential_rules=self._credential_rules if route.is_space else None,
        )
        relay = conn.relay = Relay(conn, head, route, request_bytes)
        if route.space_id is not None:
            self._notify_start(route.space_id, head.target)
        relay.start()

    def relay_ended(self, relay: Relay) -> None:
        space_id = relay.route.space_id
        if space_id is not None:
            self._notify_end(relay.conn, space_id, relay.head.target, relay.status)

    async def _resolve(self, head: RequestHead, *, cached_tried: bool = False) -> Route:
        host = _routing_host(head.host)
        resolve_cached = None if cached_tried else self._resolve_cached
        route = resolve_cached(host, head.headers) if resolve_cached is not None else None
        if route is None:
            if self._target_resolver is not None:
                route = await self._target_resolver(host, head.headers, target=head.target)
            else:
                route = await self._resolver(host, head.headers)
        if not isinstance(route, Route):
            raise TypeError(f"the resolver returned {route!r}, not a Route")
        return route

    async def _serve_with_body(self, conn: ClientConnection, head: RequestHead) -> None:
        """A request with a body, or an upgrade: served by a task that streams it (`Exchange`)."""
        keep_alive = False
        try:
            keep_alive = await self._exchange(conn, head)
        except asyncio.CancelledError:
            if not conn.at_eof:
                raise  # the server is closing
            # else: the client went away mid-exchange, which cancelled it; nothing to answer.
        except ClientGone:
            pass
        except Exception:
            logger.exception("proxy: connection from %s failed", conn.address.decode())
        finally:
            conn.exchange_done(keep_alive)

    async def _exchange(self, conn: ClientConnection, head: RequestHead) -> bool:
        """Serve one request with a body (or an upgrade). True when the connection can carry the next one."""
        requests = conn.requests
        try:
            route = await self._resolve(head)
        except ProxyError as exc:
            return self.answer_error(conn, head, exc.status, exc.message, exc.code)
        except Exception:
            logger.exception("proxy: resolver failed for host %r", head.host)
            return self.answer_error(conn, head, 500, "route lookup failed", "InternalError")

        if route.upstream is None:
            return self._answer_locally(conn, head, route)

        request_head_bytes = upstream_request_head(
            head,
            client_address=conn.address,
            scheme=self._scheme,
            credential_rules=self._credential_rules if route.is_space else None,
        )
        exchange = Exchange(
            client=conn,
            requests=requests,
            head=head,
            request_head_bytes=request_head_bytes,
            upstream=route.upstream,
            pool=self.pool,
            max_header_bytes=self.max_header_bytes,
            host_only_cookies=route.is_space,
            added_headers=route.added_for(request_head_bytes),
        )
        space_id = route.space_id
        if space_id is not None:
            self._notify_start(space_id, head.target)
        status = 0
        try:
            return await exchange.run()
        except ProxyError as exc:
            status = exc.status
            logger.info("proxy: %s %s -> %s: %s", head.method.decode(), head.host, exc.status, exc.message)
            return self.answer_error(conn, head, exc.status, exc.message, exc.code, close=isinstance(exc, BadRequest))
        finally:
            if space_id is not None:
                self._notify_end(conn, space_id, head.target, exchange.status or status)

    # Answers of the proxy's own

    def _answer_locally(self, conn: ClientConnection, head: RequestHead, route: Route) -> bool:
        body = route.body or json.dumps({"error": reason_phrase(route.status).decode()}).encode()
        close = _must_close(conn.requests, head)
        try:
            response = simple_response(
                route.status,
                body,
                content_type=route.content_type.encode("latin-1"),
                extra_headers=route.extra_headers,
                connection=_connection_header(head, close),
                head_request=head.method == b"HEAD",
            )
        except (ValueError, UnicodeEncodeError):
            logger.exception("proxy: the resolver's local route cannot be sent")
            return self.answer_error(conn, head, 500, "invalid local route", "InternalError")
        conn.write(response)
        return not close

    def answer_error(
        self,
        conn: ClientConnection,
        head: RequestHead,
        status: int,
        message: str,
        code: str,
        *,
        close: bool = False,
    ) -> bool:
        """Answer `{"error": message}`; True when the connection can carry the next request."""
        close = close or _must_close(conn.requests, head)
        conn.write(
            error_response(
                status,
                message,
                code,
                close=close,
                keep_alive_10=head.http_version == "1.0",
                head=head.method == b"HEAD",
            )
        )
        return not close

    # Activity and traffic counts

    def _notify_start(self, space_id: int, target: bytes) -> None:
        if self._activity is not None:
            self._activity.request_start(space_id, target)

    def _notify_end(self, conn: ClientConnection, space_id: int, target: bytes, status: int) -> None:
        traffic = self._traffic
        if traffic is not None:
            received = conn.bytes_received
            written = conn.bytes_written
            traffic.record(space_id, status, received - conn.received_mark, written - conn.written_mark,
                           _clock() - conn.started)
            conn.received_mark = received
            conn.written_mark = written
            conn.last_space_id = space_id
        if self._activity is not None:
            self._activity.request_end(space_id, target)

    def count_rest(self, conn: ClientConnection) -> None:
        """A closed connection's bytes since its last counted request (a body its app never read, that arrived
        after the answer) go to that request's space, as bytes between two requests go to the next one."""
        traffic = self._traffic
        if traffic is not None and conn.last_space_id >= 0:
            traffic.add_bytes(conn.last_space_id, conn.bytes_received - conn.received_mark,
                              conn.bytes_written - conn.written_mark)
            conn.received_mark = conn.bytes_received
            conn.written_mark = conn.bytes_written


def _routing_host(host: bytes | None) -> str:
    """The Host value the resolver routes on: lower-cased, without its port (`[::1]:8000` -> `[::1]`)."""
    if not host:
        return ""
    value = host.decode("latin-1").lower()
    if value.startswith("["):
        return value[: value.find("]") + 1]
    return value.partition(":")[0]


def _must_close(requests: RequestReader, head: RequestHead) -> bool:
    # An unread request body (or an upgrade request, after which nothing is HTTP) leaves the stream unusable.
    return not head.keep_alive or head.upgrade or (head.has_body and not requests.body_finished())


def _connection_header(head: RequestHead, close: bool) -> bytes | None:
    if close:
        return b"close"
    return b"keep-alive" if head.http_version == "1.0" else None
