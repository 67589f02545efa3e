"""`spacehub serve`: everything in one command (what `make run` runs).

This process runs the public proxy and the API (on an internal unix socket) in one asyncio loop, and owns its
helpers as child processes: an embedded redis-server (unless SPACEHUB_REDIS_URL is set), build and ops workers,
and the supervisor. Apps are not its children: they live in their own sessions and outlive a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import uvicorn

from spacehub import dockerhost
from spacehub.accounts import TOKEN_PREFIX
from spacehub.activity import ActivityTracker
from spacehub.api import create_app
from spacehub.context import Platform
from spacehub.gateway import SpaceResolver
from spacehub.proxy import ProxyServer, compiled, wireimpl
from spacehub.queue import BUILDS, OPS
from spacehub.redisconn import EmbeddedRedis, redis_url
from spacehub.settings import Settings, settings_env

log = logging.getLogger("spacehub.serve")


@dataclass
class Child:
    args: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    restarts: int = field(default=0)

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "spacehub", *self.args], env=self.env)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if not self.alive():
            return
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _children(settings: Settings, url: str) -> list[Child]:
    env = {**os.environ, **settings_env(settings), "SPACEHUB_REDIS_URL": url}
    children = [Child(["worker", "--queue", OPS], env)]
    children += [Child(["worker", "--queue", BUILDS], env) for _ in range(max(1, settings.workers))]
    children.append(Child(["supervisor"], env))
    return children


async def _watch_children(children: list[Child]) -> None:
    while True:
        await asyncio.sleep(1)
        for child in children:
            if not child.alive():
                child.restarts += 1
                log.warning("%s exited; starting it again", " ".join(child.args))
                child.start()


async def _listen_on_docker_bridge(settings: Settings, new_proxy: Callable[[], ProxyServer],
                                   port: int) -> ProxyServer | None:
    """Containers reach the platform only through its public port, as `host.docker.internal` (the docker
    bridge's gateway address): so the proxy listens there too, on the same port, when spaces run in containers.
    Nothing else of the platform listens on any network address (the API and redis are unix sockets)."""
    if settings.host in ("0.0.0.0", "::", "") or not await asyncio.to_thread(dockerhost.uses_docker, settings):
        return None
    gateway = await asyncio.to_thread(dockerhost.bridge_gateway, settings.docker_cli, settings.docker_network)
    if gateway is None or gateway == settings.host:
        if gateway is None:
            log.warning("no docker bridge found: containers will not reach the platform (HF_ENDPOINT)")
        return None
    bridge_proxy = new_proxy()
    try:
        await bridge_proxy.start(gateway, port)
    except OSError as exc:
        log.warning("cannot listen on the docker bridge %s:%s (%s): containers will not reach the platform",
                    gateway, port, exc)
        return None
    log.info("listening on the docker bridge too: %s:%s (host.docker.internal for containers)", gateway, port)
    return bridge_proxy


async def run(settings: Settings) -> None:
    embedded = None
    if settings.redis_url is None:
        settings.run_dir.mkdir(parents=True, exist_ok=True)
        embedded = EmbeddedRedis(settings)
        embedded.start()
    try:
        await _serve(settings)
    finally:
        if embedded is not None:
            embedded.stop()


async def _serve(settings: Settings) -> None:
    platform = Platform.open(settings)
    url = redis_url(settings)
    settings.api_socket.unlink(missing_ok=True)
    os.chmod(settings.run_dir, 0o700)  # the API socket and redis socket: only this user
    api = uvicorn.Server(uvicorn.Config(create_app(platform), uds=str(settings.api_socket), log_level="warning",
                                        proxy_headers=True, forwarded_allow_ips="*", timeout_keep_alive=30))
    resolver = SpaceResolver(settings, platform.db, url)
    # Requests per space, for sleep, freeze and drains (spacehub.activity): one tracker for every listener.
    activity = ActivityTracker(url, settings.activity_flush_s)

    def new_proxy() -> ProxyServer:  # one per listening address, all alike
        return ProxyServer(resolver, scheme=settings.spaces_scheme, platform_token_prefix=TOKEN_PREFIX,
                           activity=activity.counter)

    proxy = new_proxy()
    children = _children(settings, url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    api_task = asyncio.create_task(api.serve())
    while not api.started:
        if api_task.done():
            api_task.result()
        await asyncio.sleep(0.02)
    await resolver.start()
    await activity.start()
    await proxy.start(settings.host, settings.port)
    bridge_proxy = await _listen_on_docker_bridge(settings, new_proxy, proxy.port)
    for child in children:
        child.start()
    watcher = asyncio.create_task(_watch_children(children))
    print(f"spacehub is serving {settings.base_url} (spaces at *.{settings.spaces_domain}) on "
          f"{settings.host}:{proxy.port}", flush=True)
    if not compiled():
        log.warning("the proxy runs as plain Python (no mypyc build: see setup.py); it serves less per CPU")
    if not wireimpl.NATIVE:
        log.warning("the proxy parses HTTP with its reference wire layer (no Cython build: see setup.py); "
                    "it serves less per CPU")
    try:
        await stop.wait()
    finally:
        watcher.cancel()
        for child in children:
            child.stop()
        await proxy.close()
        if bridge_proxy is not None:
            await bridge_proxy.close()
        await resolver.close()
        await activity.close()
        api.should_exit = True
        with contextlib.suppress(Exception):
            await api_task
