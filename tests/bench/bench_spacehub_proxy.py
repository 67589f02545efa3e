"""spacehub's proxy as the bench runs it: the production resolver, a space route, credential stripping,
activity hooks and per-space traffic counts (/metrics) on, under uvloop as `spacehub serve` runs it.

The resolver is the real `gateway.SpaceResolver`, its route and space tables filled in memory the way its Redis
watcher fills them (no Redis or worker is needed for a route that already exists). The hooks are the production
ones: the request counter that `spacehub serve`'s activity tracker publishes, and the traffic counter its
/metrics reads.

Run as `python tests/bench/bench_spacehub_proxy.py PORT UPSTREAM_PORT DATA_DIR`; prints `ready` when serving.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import uvloop

from spacehub.edge.gateway import SpaceEntry, SpaceResolver
from spacehub.proxy import ProxyServer
from spacehub.proxy.activity import RequestCounter
from spacehub.proxy.traffic import TrafficCounter
from spacehub.settings import Settings
from spacehub.stages import Stage
from spacehub.store.db import Database

SPACE_LABEL = "alice-demo"
SPACE_ID = 7


def make_resolver(upstream_port: int, data_dir: Path) -> SpaceResolver:
    settings = Settings(data_dir=data_dir)
    db = Database(settings.effective_database_url)
    resolver = SpaceResolver(settings, db, redis_url="redis://unused")
    resolver.routes = {SPACE_LABEL: f"127.0.0.1:{upstream_port}"}
    entry = SpaceEntry(SPACE_ID, "alice/demo", str(Stage.RUNNING), False, "", "alice")
    resolver.spaces = {SPACE_LABEL: entry}
    return resolver


async def serve(port: int, upstream_port: int, data_dir: Path) -> None:
    activity = RequestCounter()  # the hooks `spacehub serve` gives its proxy (spacehub.edge.activity.ActivityTracker)
    traffic = TrafficCounter()  # what `spacehub serve` gives it for /metrics (spacehub.metrics.ProxyCollector)
    proxy = ProxyServer(make_resolver(upstream_port, data_dir), activity=activity, traffic=traffic)
    await proxy.start("127.0.0.1", port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await proxy.close()


def main() -> None:
    port, upstream_port, data_dir = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    uvloop.run(serve(port, upstream_port, data_dir))


if __name__ == "__main__":
    main()
