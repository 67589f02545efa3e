"""`spacehub serve`: everything in one command (what `make run` runs).

This process runs the public proxy, and owns the other roles as child processes: the API (`spacehub api` on
the internal unix socket, never on the proxy's loop: a commit or a slow handler cannot hold up a space's
requests), an embedded redis-server (unless SPACEHUB_REDIS_URL is set), build and ops workers, and the
supervisor. A child that dies is started again. Apps are not its children: they live in their own sessions and
outlive a restart. One /metrics on the platform host (answered by the API) covers the proxy's figures too: the
proxy hands them over a unix socket (spacehub.proxyfigures).

Stopping (SIGTERM or Ctrl-C): it stops taking new work, lets the requests, streams and jobs in flight finish for
at most `shutdown_grace_s` (a second signal cuts them at once): the proxy drains first, then serve signals the API
(which the proxy's requests reach; it gets its own `shutdown_grace_s`), while workers and the supervisor stop;
then it says which apps it leaves running on purpose (the next start re-adopts them; `spacehub stop` stops them).
A terminal's Ctrl-C reaches the whole process group at once: the API then stops with the proxy, and uvicorn's
own graceful stop lets its requests in flight finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from spacehub import dockerhost
from spacehub.accounts import TOKEN_PREFIX
from spacehub.context import Platform
from spacehub.edge.activity import ActivityTracker
from spacehub.edge.gateway import SpaceResolver
from spacehub.metrics import ProxyCollector, new_registry
from spacehub.proxy import ProxyServer, compiled, wireimpl
from spacehub.proxy.traffic import TrafficCounter
from spacehub.proxyfigures import serve_figures
from spacehub.queue import BUILDS, OPS
from spacehub.redisconn import EmbeddedRedis, redis_url
from spacehub.rolehealth import parse_address
from spacehub.servepid import claim, die_with_parent, remove_serve_pid
from spacehub.settings import Settings, settings_env
from spacehub.stages import SHOULD_RUN
from spacehub.startcheck import check_redis, check_sandbox
from spacehub.store.models import Space

log = logging.getLogger("spacehub.serve")


@dataclass
class Child:
    args: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    restarts: int = field(default=0)

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "spacehub", *self.args], env=self.env,
                                        preexec_fn=die_with_parent)  # dies with serve

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def terminate(self) -> None:
        """Ask it to stop (a worker finishes its job in hand first, RQ's warm shutdown)."""
        if self.alive():
            assert self.process is not None
            self.process.terminate()

    def wait(self, deadline: float) -> None:
        """Wait for it to exit until `deadline` (monotonic), then kill it."""
        if self.process is None:
            return
        try:
            self.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in time; killing it", " ".join(self.args))
            self.process.kill()
            self.process.wait()


def _stop_children(children: list[Child], grace_s: float) -> None:
    for child in children:
        child.terminate()
    deadline = time.monotonic() + grace_s
    for child in children:
        child.wait(deadline)


def _child_env(settings: Settings, url: str) -> dict[str, str]:
    return {**os.environ, **settings_env(settings), "SPACEHUB_REDIS_URL": url}


def _children(settings: Settings, url: str) -> list[Child]:
    env = _child_env(settings, url)
    children = [Child(["worker", "--queue", OPS], env)]
    children += [Child(["worker", "--queue", BUILDS], env) for _ in range(max(1, settings.workers))]
    children.append(Child(["supervisor"], env))
    return children


async def _api_answers(settings: Settings) -> bool:
    """Whether the API accepts connections where the proxy sends it (uvicorn listens once the app is up)."""
    try:
        if settings.api_listen:
            _reader, writer = await asyncio.open_connection(*parse_address(settings.api_listen))
        else:
            _reader, writer = await asyncio.open_unix_connection(str(settings.api_socket))
    except OSError:
        return False
    writer.close()
    return True


async def _wait_for_api(settings: Settings, api: Child, stop: asyncio.Event) -> None:
    """Until the API child answers (or a signal asks to stop); one that exits while starting ends serve."""
    while not stop.is_set() and not await _api_answers(settings):
        if not api.alive():
            assert api.process is not None
            raise SystemExit(f"spacehub serve: the API exited while starting (status {api.process.returncode}); "
                             "its log is above")
        await asyncio.sleep(0.05)


async def _watch_children(children: list[Child]) -> None:
    while True:
        await asyncio.sleep(1)
        for child in children:
            if not child.alive():
                child.restarts += 1
                log.warning("%s exited; starting it again", " ".join(child.args))
                child.start()


async def _listen_on_docker_bridges(settings: Settings, new_proxy: Callable[[], ProxyServer],
                                    port: int, *, reuse_port: bool = False) -> list[ProxyServer]:
    """Containers reach the platform only through its public port, as `host.docker.internal`: the gateway of
    spacehub's space network for apps, and of dockerd's default bridge for build steps (BuildKit runs them
    there). So the proxy listens on both gateways too, on the same port, when spaces run in containers; the
    egress rules (spacehub.sandbox.egress) let containers reach that port there and nothing else of the host.
    Nothing else of the platform listens on any network address (the API and redis are unix sockets).
    `reuse_port`: several proxy processes on one machine share these listeners too (SO_REUSEPORT), so the apps
    keep reaching the platform while one of them restarts."""
    if settings.host in ("0.0.0.0", "::", "") or not await asyncio.to_thread(dockerhost.uses_docker, settings):
        return []
    proxies = []
    for network in dict.fromkeys((settings.docker_network, "bridge")):
        gateway = await asyncio.to_thread(dockerhost.bridge_gateway, settings.docker_cli, network)
        if gateway is None or gateway == settings.host:
            if gateway is None:
                log.warning("no docker network %s: its containers will not reach the platform (HF_ENDPOINT)",
                            network)
            continue
        bridge_proxy = new_proxy()
        try:
            await bridge_proxy.start(gateway, port, reuse_port=reuse_port)
        except OSError as exc:
            log.warning("cannot listen on the docker network %s at %s:%s (%s): its containers will not reach the "
                        "platform", network, gateway, port, exc)
            continue
        log.info("listening on docker network %s too: %s:%s (host.docker.internal there)", network, gateway, port)
        proxies.append(bridge_proxy)
    return proxies


async def _keep_redis_alive(embedded: EmbeddedRedis, every_s: float) -> None:
    """The embedded redis-server is a dependency, not a single point of failure: one that died starts again."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await asyncio.to_thread(embedded.keep_alive)
        except Exception:  # noqa: BLE001 - keep trying: the API answers 503 meanwhile
            log.exception("could not start the embedded redis-server again; retrying")


def remove_stale_uploads(settings: Settings) -> int:
    """Upload staging folders left by a process that died mid-upload (nothing else is running yet)."""
    removed = 0
    for path in (settings.data_dir / "tmp").glob("upload-*"):
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    if removed:
        log.info("removed %d upload staging folder(s) left by an earlier run", removed)
    return removed


async def run(settings: Settings) -> None:
    check_sandbox(settings)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    check_redis(settings)  # a configured Redis that is misnamed or down: one line, before anything starts
    claim(settings)  # one serve per data dir; its pid file is how `spacehub stop` finds it
    embedded = None
    keeper: asyncio.Task[None] | None = None
    try:
        remove_stale_uploads(settings)
        if settings.redis_url is None:
            embedded = EmbeddedRedis(settings)
            await asyncio.to_thread(embedded.start)
            keeper = asyncio.create_task(_keep_redis_alive(embedded, settings.redis_check_s))
        await _serve(settings)
    finally:
        if keeper is not None:
            keeper.cancel()
        if embedded is not None:
            embedded.stop()
        remove_serve_pid(settings)


def _apps_left_running(platform: Platform) -> list[str]:
    with platform.db.session() as session:
        rows = session.execute(Space.__table__.select().where(Space.handle.is_not(None),
                                                             Space.stage.in_([str(s) for s in SHOULD_RUN])))
        return sorted(f"{row.owner}/{row.name}" for row in rows)


async def _serve(settings: Settings) -> None:
    platform = Platform.open(settings)  # migrates the schema before any child opens the database
    url = redis_url(settings)
    settings.api_socket.unlink(missing_ok=True)
    os.chmod(settings.run_dir, 0o700)  # the API, redis and figures sockets: only this user
    # The API first: it takes longest to start (it imports the web app); the proxy meanwhile comes up.
    api = Child(["api"], _child_env(settings, url))
    resolver = SpaceResolver(settings, platform.db, url)
    # Requests per space, for sleep, freeze and drains (spacehub.edge.activity): one tracker for every listener.
    activity = ActivityTracker(url, settings.activity_flush_s)
    traffic = TrafficCounter()  # requests, bytes and durations per space, for /metrics: one for every listener
    # The proxy's figures, read at scrape time, for the API's /metrics (spacehub.proxyfigures).
    metrics = new_registry()
    metrics.register(ProxyCollector(activity.counter, resolver, traffic))

    def new_proxy() -> ProxyServer:  # one per listening address, all alike
        return ProxyServer(resolver, scheme=settings.spaces_scheme, platform_token_prefix=TOKEN_PREFIX,
                           activity=activity.counter, traffic=traffic)

    proxy = new_proxy()
    bridge_proxies: list[ProxyServer] = []
    children = _children(settings, url)
    stop, hurry = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            hurry.set()  # a second signal: cut what is still in flight
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    watcher: asyncio.Task[None] | None = None
    figures: asyncio.AbstractServer | None = None
    try:
        api.start()
        await resolver.start()
        await activity.start()
        figures = await serve_figures(metrics, settings.proxy_figures_socket)
        for child in children:
            child.start()
        # The public port opens once the API answers: the platform host never gets a 502 for a starting API.
        await _wait_for_api(settings, api, stop)
        await proxy.start(settings.host, settings.port)
        bridge_proxies += await _listen_on_docker_bridges(settings, new_proxy, proxy.port)
        watcher = asyncio.create_task(_watch_children([api, *children]))
        if not stop.is_set():
            print(f"spacehub is serving {settings.base_url} (spaces at *.{settings.spaces_domain}) on "
                  f"{settings.host}:{proxy.port}", flush=True)
        if not compiled():
            log.warning("the proxy runs as plain Python (no mypyc build: see setup.py); it serves less per CPU")
        if not wireimpl.NATIVE:
            log.warning("the proxy parses HTTP with its reference wire layer (no Cython build: see setup.py); "
                        "it serves less per CPU")
        await stop.wait()
        watcher.cancel()  # children that exit from now on are meant to
        await _drain(settings, [proxy, *bridge_proxies], children, api, hurry)
    finally:
        if watcher is not None:
            watcher.cancel()
        await asyncio.to_thread(_stop_children, [*children, api], 0 if hurry.is_set() else settings.shutdown_grace_s)
        await proxy.close()
        for bridge_proxy in bridge_proxies:
            await bridge_proxy.close()
        if figures is not None:
            figures.close()
            settings.proxy_figures_socket.unlink(missing_ok=True)
        await resolver.close()
        await activity.close()
        with contextlib.suppress(Exception):
            left = await asyncio.to_thread(_apps_left_running, platform)
            if left:
                log.info("leaving %d app(s) running on purpose, for the next start to re-adopt: %s "
                         "(`spacehub stop` stops them)", len(left), ", ".join(left))
        print("spacehub stopped", flush=True)


async def _drain(settings: Settings, proxies: list[ProxyServer], children: list[Child], api: Child,
                 hurry: asyncio.Event) -> None:
    """No new work; what is in flight (requests, streams, jobs) gets `shutdown_grace_s` to finish. The API
    stops once the proxy has drained (the proxy's requests to the platform host are the API's), with a
    `shutdown_grace_s` of its own; workers and the supervisor stop meanwhile."""
    grace = settings.shutdown_grace_s
    log.info("stopping: no new connections or jobs; what is in flight gets up to %gs to finish "
             "(signal again to stop at once)", grace)
    drains = [asyncio.create_task(p.drain(grace)) for p in proxies]
    stopping = asyncio.create_task(asyncio.to_thread(_stop_children, children, grace))

    async def api_after_proxies() -> None:
        await asyncio.wait(drains)
        await asyncio.to_thread(_stop_children, [api], grace)

    api_stopping = asyncio.create_task(api_after_proxies())
    work: list[asyncio.Task[object]] = [*drains, stopping, api_stopping]  # type: ignore[list-item]
    cut = asyncio.create_task(hurry.wait())
    while not all(task.done() for task in work) and not cut.done():
        await asyncio.wait([*work, cut], return_when=asyncio.FIRST_COMPLETED)
    cut.cancel()
    if hurry.is_set():
        for task in [*drains, api_stopping]:
            task.cancel()  # busy connections are cut by close(); children are killed by the caller
        log.warning("stopping now, as asked again: what is still in flight is cut")
        return
    busy = sum(task.result() for task in drains)
    if busy:
        log.warning("stopping now: %d connection(s) still busy after %gs are cut", busy, grace)
