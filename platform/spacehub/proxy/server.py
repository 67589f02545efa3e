"""The public listener: accepts client connections and serves each request on them in turn.

Per request: parse (strictly), ask the resolver where it goes, rewrite the headers, and either answer
locally or forward it (`Exchange`). Every request on a keep-alive connection goes through all of that, not
just the first.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from spacehub.errors import SpacehubError

from .channel import Channel
from .errors import BadRequest, ClientGone, ProxyError
from .exchange import Exchange
from .headers import CredentialRules, reason_phrase, simple_response, upstream_request_head
from .http1 import RequestHead, RequestReader
from .pool import UpstreamPool
from .routing import Resolver, Route

logger = logging.getLogger(__name__)

_JSON = b"application/json"


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
        on_request_start: Callable[[int], None] | None = None,
        on_request_end: Callable[[int], None] | None = None,
        upstream_idle_s: float = 3.0,
        max_header_bytes: int = 65536,
    ) -> None:
        self._resolver = resolver
        self._scheme = scheme.encode("ascii")
        self._credential_rules = CredentialRules(
            token_prefix=platform_token_prefix.encode(), session_cookie=session_cookie.encode()
        )
        self._on_request_start = on_request_start
        self._on_request_end = on_request_end
        self._upstream_idle_s = upstream_idle_s
        self._max_header_bytes = max_header_bytes
        self._pool: UpstreamPool | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> None:
        """Bind and start accepting (`port=0`: any free port, see `.port`)."""
        loop = asyncio.get_running_loop()
        self._pool = UpstreamPool(idle_s=self._upstream_idle_s, connect_timeout_s=self.connect_timeout_s)
        self._server = await loop.create_server(
            lambda: Channel(self._accept), host, port, reuse_address=True, backlog=self.backlog
        )

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the proxy is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def pool(self) -> UpstreamPool:
        if self._pool is None:
            raise RuntimeError("the proxy is not started")
        return self._pool

    @property
    def open_connections(self) -> int:
        """Client connections being served right now (for metrics and tests)."""
        return len(self._connections)

    async def close(self) -> None:
        """Stop accepting, end every client connection and close pooled upstream connections."""
        if self._server is not None:
            self._server.close()
        connections = list(self._connections)
        for task in connections:
            task.cancel()
        await asyncio.gather(*connections, return_exceptions=True)
        if self._pool is not None:
            self._pool.close()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    # One client connection

    def _accept(self, client: Channel) -> None:
        task = asyncio.get_running_loop().create_task(self._serve_connection(client))
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def _serve_connection(self, client: Channel) -> None:
        requests = RequestReader(client, max_header_bytes=self._max_header_bytes, head_timeout_s=self.head_timeout_s)
        client_address = client.peer_address.encode()
        try:
            while not client.closed:
                try:
                    head = await requests.read_head()
                except BadRequest as exc:
                    client.write(_error_response(exc.status, exc.message, exc.code, close=True))
                    break
                if head is None or not await self._serve_request(client, requests, head, client_address):
                    break
        except asyncio.CancelledError:
            if not client.at_eof:
                raise  # the server is closing
            # else: the client went away mid-exchange and `on_disconnect` stopped the work; nothing to answer.
        except ClientGone:
            pass
        except Exception:
            logger.exception("proxy: connection from %s failed", client_address.decode())
        finally:
            client.close()

    async def _serve_request(
        self, client: Channel, requests: RequestReader, head: RequestHead, client_address: bytes
    ) -> bool:
        """Serve one request. True when the connection can carry the next one."""
        try:
            route = await self._resolver(_routing_host(head.host), head.headers)
        except SpacehubError as exc:
            return self._answer(client, requests, head, exc.status, exc.message, exc.code)
        except Exception:
            logger.exception("proxy: resolver failed for host %r", head.host)
            return self._answer(client, requests, head, 500, "route lookup failed", "InternalError")

        if route.upstream is None:
            return self._answer_locally(client, requests, head, route)

        request_head_bytes = upstream_request_head(
            head,
            client_address=client_address,
            scheme=self._scheme,
            credential_rules=self._credential_rules if route.is_space else None,
        )
        exchange = Exchange(
            client=client,
            requests=requests,
            head=head,
            request_head_bytes=request_head_bytes,
            upstream=route.upstream,
            pool=self.pool,
            max_header_bytes=self._max_header_bytes,
            host_only_cookies=route.is_space,
        )
        space_id = route.space_id
        if space_id is not None:
            self._notify(self._on_request_start, space_id)
        # A client that vanishes mid-exchange cancels it at once (an SSE stream could idle on for long).
        task = asyncio.current_task()
        client.on_disconnect = task.cancel if task is not None else None
        try:
            return await exchange.run()
        except ProxyError as exc:
            logger.info("proxy: %s %s -> %s: %s", head.method.decode(), head.host, exc.status, exc.message)
            return self._answer(
                client, requests, head, exc.status, exc.message, exc.code, close=isinstance(exc, BadRequest)
            )
        finally:
            client.on_disconnect = None
            if space_id is not None:
                self._notify(self._on_request_end, space_id)

    def _answer_locally(self, client: Channel, requests: RequestReader, head: RequestHead, route: Route) -> bool:
        body = route.body or json.dumps({"error": reason_phrase(route.status).decode()}).encode()
        close = _must_close(requests, head)
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
            return self._answer(client, requests, head, 500, "invalid local route", "InternalError")
        client.write(response)
        return not close

    def _answer(
        self,
        client: Channel,
        requests: RequestReader,
        head: RequestHead,
        status: int,
        message: str,
        code: str,
        *,
        close: bool = False,
    ) -> bool:
        close = close or _must_close(requests, head)
        client.write(
            _error_response(
                status,
                message,
                code,
                close=close,
                keep_alive_10=head.http_version == "1.0",
                head=head.method == b"HEAD",
            )
        )
        return not close

    def _notify(self, hook: Callable[[int], None] | None, space_id: int) -> None:
        if hook is None:
            return
        try:
            hook(space_id)
        except Exception:
            logger.exception("proxy: activity hook failed for space %s", space_id)


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


def _error_response(
    status: int, message: str, code: str, *, close: bool, keep_alive_10: bool = False, head: bool = False
) -> bytes:
    connection = b"close" if close else (b"keep-alive" if keep_alive_10 else None)
    return simple_response(
        status,
        json.dumps({"error": message}).encode(),
        content_type=_JSON,
        extra_headers=(("X-Error-Code", code),),
        connection=connection,
        head_request=head,
    )
