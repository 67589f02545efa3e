"""How the control plane's cost grows with the number of registered spaces (10 -> 1,000 by default).

For each size: a fresh data dir whose database holds that many spaces (most installs' spaces sleep: they are
SLEEPING here, a tenth of them private), an embedded redis-server, and then
  - API list latency: `GET /api/spaces?limit=100` and `?search=` (in-process ASGI, so only the API's own work),
    p50 and p99 of `--requests` calls;
  - reconcile pass CPU: the supervisor's whole `tick()` (apps, routes, lost builds, GPUs, fork-servers), CPU
    seconds per pass (median of `--passes`);
  - proxy route-table memory: the gateway's space table as the proxy holds it, bytes per the whole table
    (tracemalloc), and the time to load it from SQL.
Usage: python tests/bench/bench_control_plane.py [--sizes 10,100,1000] [--out FILE]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "platform"), str(ROOT / "runner"), str(ROOT / "tests")]

from spacehub.settings import Settings  # noqa: E402


def _populate(settings: Settings, count: int) -> None:
    from spacehub.context import Platform
    from spacehub.store.models import Space, User

    platform = Platform.open(settings)
    with platform.db.session() as session:
        session.add(User(name="owner", name_key="owner", is_admin=True))
        for n in range(count):
            name = f"space-{n:05d}"
            session.add(Space(owner="owner", name=name, key=f"owner/{name}", label=f"owner-{name}", sdk="gradio",
                              stage="SLEEPING", private=(n % 10 == 0), desired_sha="0" * 40))
    platform.db.engine.dispose()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def measure(count: int, requests: int, passes: int) -> dict[str, float]:
    from starlette.testclient import TestClient

    from spacehub.accounts import create_token, get_user
    from spacehub.app import create_app
    from spacehub.context import Platform
    from spacehub.edge.gateway import SpaceResolver
    from spacehub.redisconn import EmbeddedRedis
    from spacehub_runner.supervisor import Supervisor

    with tempfile.TemporaryDirectory(prefix="spacehub-cp-bench-") as tmp:
        settings = Settings(data_dir=Path(tmp), freeze_after_s=0)  # type: ignore[call-arg]
        redis = EmbeddedRedis(settings)
        redis.start()
        try:
            _populate(settings, count)
            platform = Platform.open(settings, migrate_schema=False)
            with platform.db.session() as session:
                token = create_token(session, get_user(session, "owner"), "bench").secret
            client = TestClient(create_app(platform), base_url="http://localhost")
            headers = {"Authorization": f"Bearer {token}"}
            figures: dict[str, float] = {}
            for label, path in (("list", "/api/spaces?limit=100"), ("search", "/api/spaces?search=space-0009")):
                assert client.get(path, headers=headers).status_code == 200
                took = []
                for _ in range(requests):
                    started = time.perf_counter()
                    client.get(path, headers=headers)
                    took.append(time.perf_counter() - started)
                figures[f"{label}_p50_ms"] = statistics.median(took) * 1000
                figures[f"{label}_p99_ms"] = _percentile(took, 0.99) * 1000
            supervisor = Supervisor(platform)
            supervisor.tick()  # the first pass finds frozen apps and fork-servers once
            cpu = []
            for _ in range(passes):
                started = time.process_time()
                supervisor.tick()
                cpu.append(time.process_time() - started)
            figures["reconcile_cpu_ms"] = statistics.median(cpu) * 1000
            resolver = SpaceResolver(settings, platform.db, "redis://unused")
            tracemalloc.start()
            started = time.perf_counter()
            table = resolver._query_spaces()
            figures["route_table_load_ms"] = (time.perf_counter() - started) * 1000
            figures["route_table_kib"] = tracemalloc.get_traced_memory()[0] / 1024
            tracemalloc.stop()
            assert len(table) == count
            platform.db.engine.dispose()
            return figures
        finally:
            redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        figures = measure(size, args.requests, args.passes)
        rows.append(f"| {size} | {figures['list_p50_ms']:.1f} / {figures['list_p99_ms']:.1f} | "
                    f"{figures['search_p50_ms']:.1f} / {figures['search_p99_ms']:.1f} | "
                    f"{figures['reconcile_cpu_ms']:.1f} | {figures['route_table_kib']:.0f} | "
                    f"{figures['route_table_load_ms']:.1f} |")
        print(rows[-1], flush=True)
    report = "\n".join([
        "## Control plane cost by registered spaces (SQLite, in-process API; medians unless p99)", "",
        "| spaces | API list p50 / p99 ms | API search p50 / p99 ms | reconcile pass CPU ms | proxy space table KiB |"
        " table load ms |",
        "|---|---|---|---|---|---|", *rows, ""])
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
