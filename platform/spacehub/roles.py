"""The platform's roles as processes that share only SQL and Redis: `spacehub api` and `spacehub proxy` here
(`worker` and `supervisor` are the runner's). Each runs alone (several proxies share one port with
SO_REUSEPORT), has its own health and readiness endpoint, and stops gracefully on SIGTERM: no new work, what is
in flight finishes within `shutdown_grace_s`. `spacehub serve` runs them all on one machine: the proxy in its
own process, the API (`run_api`) as a child process on the unix socket, never on the proxy's loop; there the
proxy hands its figures to the API (spacehub.proxyfigures), so one /metrics covers both.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable

import redis
import uvicorn

from spacehub import health
from spacehub.accounts import TOKEN_PREFIX
from spacehub.app import create_app
from spacehub.context import Platform
from spacehub.edge.activity import ActivityTracker
from spacehub.edge.gateway import SpaceResolver
from spacehub.metrics import ProxyCollector, new_registry
from spacehub.proxy import ProxyServer, compiled, wireimpl
from spacehub.proxy.traffic import TrafficCounter
from spacehub.proxyfigures import ProxyFigures
from spacehub.redisconn import connect, redis_url
from spacehub.rolehealth import HealthListener, RoleState, parse_address
from spacehub.serve import _listen_on_docker_bridges
from spacehub.settings import Settings
from spacehub.startcheck import check_redis
from spacehub.store.db import Database

log = logging.getLogger("spacehub.roles")


def stop_signals() -> tuple[asyncio.Event, asyncio.Event]:
    """(stop, hurry): the first SIGTERM/SIGINT asks for a graceful stop, a second one to cut what is left."""
    stop, hurry = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            hurry.set()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    return stop, hurry


# The API ---------------------------------------------------------------------------------------------------------


def api_config(settings: Settings, platform: Platform) -> uvicorn.Config:
    """The API's server: on SPACEHUB_API_LISTEN (host:port) or else the unix socket under the run dir."""
    where: dict[str, object]
    if settings.api_listen:
        host, port = parse_address(settings.api_listen)
        # Over TCP anyone who reaches the port could write X-Forwarded-For: only the proxies' is believed.
        where = {"host": host, "port": port, "forwarded_allow_ips": settings.api_trusted_proxies}
    else:
        settings.run_dir.mkdir(parents=True, exist_ok=True)
        settings.api_socket.unlink(missing_ok=True)
        where = {"uds": str(settings.api_socket), "forwarded_allow_ips": "*"}  # only the proxy can connect
    # Under `spacehub serve`, the proxy process's figures too: one /metrics on the platform host covers both.
    metrics = new_registry()
    metrics.register(ProxyFigures(settings.proxy_figures_socket, settings.proxy_figures_timeout_s))
    return uvicorn.Config(create_app(platform, metrics), log_level="warning", proxy_headers=True,
                          timeout_keep_alive=30, timeout_graceful_shutdown=max(1, int(settings.shutdown_grace_s)),
                          **where)  # type: ignore[arg-type]


def run_api(settings: Settings) -> None:
    """`spacehub api`: the API and web UI in a process of their own. uvicorn stops gracefully on SIGTERM (no new
    connections; requests in flight get `shutdown_grace_s`). Its `/health` is its health and readiness."""
    platform = Platform.open(settings)
    # uvicorn handles the signal itself (a graceful stop), then raises it again once done: the handler it gives
    # it back to makes that an ordinary exit, not a death by signal.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _signum, _frame: sys.exit(0))
    uvicorn.Server(api_config(settings, platform)).run()
    print("spacehub api stopped", flush=True)


# The proxy -------------------------------------------------------------------------------------------------------


class ProxyRole:
    """The public port: the proxy with its resolver (routes from Redis, spaces from SQL) and activity publisher;
    plus, when spaces run in containers, the same proxy on the docker bridges (`host.docker.internal`)."""

    def __init__(self, settings: Settings, db: Database, url: str) -> None:
        self.settings = settings
        self.resolver = SpaceResolver(settings, db, url)
        # Requests per space, for sleep, freeze and drains (spacehub.edge.activity): one tracker for every listener.
        self.activity = ActivityTracker(url, settings.activity_flush_s)
        self.traffic = TrafficCounter()  # requests, bytes and durations per space, for this process's /metrics
        self.proxies: list[ProxyServer] = []

    def _new_proxy(self) -> ProxyServer:
        return ProxyServer(self.resolver, scheme=self.settings.spaces_scheme, platform_token_prefix=TOKEN_PREFIX,
                           activity=self.activity.counter, traffic=self.traffic)

    @property
    def port(self) -> int:
        return self.proxies[0].port

    async def start(self, *, reuse_port: bool = False) -> None:
        await self.resolver.start()
        await self.activity.start()
        proxy = self._new_proxy()
        await proxy.start(self.settings.host, self.settings.port, reuse_port=reuse_port)
        self.proxies.append(proxy)
        # The same listeners on the docker networks' gateways as under `serve` (shared like the public port).
        self.proxies += await _listen_on_docker_bridges(self.settings, self._new_proxy, proxy.port,
                                                       reuse_port=reuse_port)
        if not compiled():
            log.warning("the proxy runs as plain Python (no mypyc build: see setup.py); it serves less per CPU")
        if not wireimpl.NATIVE:
            log.warning("the proxy parses HTTP with its reference wire layer (no Cython build: see setup.py); "
                        "it serves less per CPU")

    async def drain(self, hurry: asyncio.Event) -> int:
        """No new connections; exchanges in flight (streams included) get `shutdown_grace_s`, or until `hurry`.
        Returns how many connections were still busy."""
        drains = [asyncio.create_task(p.drain(self.settings.shutdown_grace_s)) for p in self.proxies]
        cut = asyncio.create_task(hurry.wait())
        while not all(task.done() for task in drains) and not cut.done():
            await asyncio.wait([*drains, cut], return_when=asyncio.FIRST_COMPLETED)
        cut.cancel()
        if not all(task.done() for task in drains):
            for task in drains:
                task.cancel()
            return sum(p.open_connections for p in self.proxies)
        return sum(task.result() for task in drains)

    async def close(self) -> None:
        for proxy in self.proxies:
            await proxy.close()
        await self.resolver.close()
        await self.activity.close()


def redis_checks(settings: Settings, db: Database | None = None) -> dict[str, Callable[[], health.Check]]:
    """What a role alone depends on: Redis, and the database when it reads one."""
    conn: list[redis.Redis] = []

    def redis_check() -> health.Check:
        if not conn:
            conn.append(connect(settings))
        return health.redis_server(conn[0])

    checks = {"redis": redis_check}
    if db is not None:
        checks["database"] = lambda: health.database(db)
    return checks


async def run_proxy(settings: Settings, health_address: str | None) -> None:
    """`spacehub proxy`: one proxy process; several can share the public port (SO_REUSEPORT)."""
    check_redis(settings)
    db = Database(settings.effective_database_url)
    state = RoleState()
    role = ProxyRole(settings, db, redis_url(settings))
    listener = None
    if health_address:
        metrics = new_registry()  # this process's proxy figures, at /metrics beside /health and /ready
        metrics.register(ProxyCollector(role.activity.counter, role.resolver, role.traffic))
        listener = HealthListener("proxy", health_address, redis_checks(settings, db), state,
                                  settings.retry_after_s, metrics).start()
    stop, hurry = stop_signals()
    await role.start(reuse_port=True)
    state.started.set()
    print(f"spacehub proxy is serving {settings.host}:{role.port}", flush=True)
    try:
        await stop.wait()
        state.stopping.set()
        log.info("proxy stopping: no new connections; in flight gets up to %gs", settings.shutdown_grace_s)
        busy = await role.drain(hurry)
        if busy:
            log.warning("proxy: %d connection(s) still busy are cut", busy)
    finally:
        await role.close()
        if listener is not None:
            listener.close()
        print("spacehub proxy stopped", flush=True)
