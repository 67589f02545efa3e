"""`make bench-load`: the load one install holds, reported as figures (never asserted).

One real `spacehub serve` (process runtime, embedded Redis, SQLite, `--workers` build workers: builds run with that
bounded concurrency) with `--running` static apps serving steady traffic through the proxy. Then, at once,
`--uploads` space uploads over the REST API: one user ("alice") uploads `--heavy` new spaces, another ("carol")
the rest but one; as soon as alice's uploads are accepted (her builds are queued), a third user ("bob") uploads
his one space. Every upload queues a build. Until every build has ended, probes measure:
  - `GET /health` and the API (`GET /api/spaces/{id}`, `GET /api/spaces?author=`) latency, p50/p99/max;
  - the running apps' latency through the proxy, and their errors;
  - the control plane's memory: resident set of `serve` and the processes of its session (workers, supervisor,
    Redis; apps run in sessions of their own and are left out), before the burst, at its peak, after;
  - build queue fairness (from the builds table): when bob's one build started, counted in alice's builds
    started before it, and each user's queue wait (build created -> started).

Usage: python tests/bench/bench_load.py [--running 10] [--uploads 50] [--heavy 30] [--workers 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "platform"), str(ROOT / "runner"), str(ROOT / "tests")]

from support.faults import static_tree  # noqa: E402
from support.server import Server  # noqa: E402

STEADY_OWNER = "admin"


@dataclass
class Probe:
    """Latencies (seconds) of one kind of request, and the failed ones."""

    seconds: list[float] = field(default_factory=list)
    errors: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # what the errors were, by kind
    lock: threading.Lock = field(default_factory=threading.Lock)  # the uploads' threads share one

    def timed(self, call: Callable[[], httpx.Response]) -> None:
        started = time.perf_counter()
        try:
            response = call()
        except httpx.HTTPError as exc:
            self.failed(type(exc).__name__)
            return
        with self.lock:
            self.seconds.append(time.perf_counter() - started)
        if response.status_code >= 400:
            self.failed(f"{response.status_code} {response.text[:120]}")

    def failed(self, kind: str) -> None:
        with self.lock:
            self.errors += 1
            self.failures[kind] = self.failures.get(kind, 0) + 1


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def _ms(probe: Probe) -> str:
    s = probe.seconds
    return (f"{len(s)} | {_percentile(s, 0.5) * 1e3:.1f} | {_percentile(s, 0.99) * 1e3:.1f} | "
            f"{(max(s) if s else float('nan')) * 1e3:.1f} | {probe.errors}")


def control_plane_rss(pid: int) -> int:
    """Bytes resident in `pid` and every process of its session (its workers, supervisor and Redis)."""
    session = os.getsid(pid)
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getsid(int(entry)) != session:
                continue
            with open(f"/proc/{entry}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except (OSError, ValueError):
            continue  # gone meanwhile
    return total


class Load:
    def __init__(self, server: Server, args: argparse.Namespace) -> None:
        self.server = server
        self.args = args
        self.stop = threading.Event()
        self.health, self.api, self.apps, self.uploads = Probe(), Probe(), Probe(), Probe()
        self.rss: list[int] = []
        self.tokens: dict[str, str] = {}
        self.app_labels: list[str] = []

    # Setting up

    def user(self, name: str) -> str:
        self.server.cli("users", "create", name)
        token = self.server.cli("token", "create", "--user", name).stdout.strip().splitlines()[-1]
        self.tokens[name] = token
        return token

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=f"http://127.0.0.1:{self.server.port}", timeout=120,
                            headers={"Authorization": f"Bearer {token}", "Host": f"localhost:{self.server.port}"})

    def upload(self, client: httpx.Client, owner: str, name: str) -> None:
        def call() -> httpx.Response:
            created = client.post("/api/repos/create", json={"type": "space", "name": name, "sdk": "static"})
            if created.is_error:
                return created
            return client.post(f"/api/spaces/{owner}/{name}/upload", params={"filename": "site.tar.gz"},
                               content=static_tree(f"{owner}/{name}"), headers={"Content-Type": "application/gzip"})

        self.uploads.timed(call)

    def start_running_apps(self) -> None:
        admin = self.client(self.server.token)
        for n in range(self.args.running):
            name = f"steady-{n:02d}"
            created = admin.post("/api/repos/create", json={"type": "space", "name": name, "sdk": "static"})
            created.raise_for_status()
            admin.post(f"/api/spaces/{STEADY_OWNER}/{name}/upload", params={"filename": "site.tar.gz"},
                       content=static_tree(name), headers={"Content-Type": "application/gzip"}).raise_for_status()
        for n in range(self.args.running):
            repo_id = f"{STEADY_OWNER}/steady-{n:02d}"
            self.server.wait_stage(repo_id, {"RUNNING"}, timeout=600)
            self.app_labels.append(admin.get(f"/api/spaces/{repo_id}").json()["subdomain"])

    # Probes, each in a thread of its own until `stop`

    def every(self, period_s: float, step: Callable[[int], None]) -> threading.Thread:
        def run() -> None:
            n = 0
            while not self.stop.is_set():
                started = time.monotonic()
                step(n)
                n += 1
                self.stop.wait(max(0.0, period_s - (time.monotonic() - started)))

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def probes(self) -> list[threading.Thread]:
        api = self.client(self.server.token)
        apps = httpx.Client(base_url=f"http://127.0.0.1:{self.server.port}", timeout=60)
        assert self.server.process is not None
        pid = self.server.process.pid

        def api_step(n: int) -> None:
            if n % 2:
                self.api.timed(lambda: api.get(f"/api/spaces/{STEADY_OWNER}/steady-00"))
            else:
                self.api.timed(lambda: api.get("/api/spaces", params={"author": "alice"}))

        def app_step(n: int) -> None:
            host = self.server.host(self.app_labels[n % len(self.app_labels)])
            self.apps.timed(lambda: apps.get("/", headers={"Host": host}))

        return [
            self.every(0.05, lambda _n: self.health.timed(lambda: api.get("/health"))),
            self.every(0.1, api_step),
            self.every(1.0 / self.args.app_rps, app_step),
            self.every(0.5, lambda _n: self.rss.append(control_plane_rss(pid))),
        ]

    # The burst

    def burst(self) -> None:
        clients = {name: self.client(token) for name, token in self.tokens.items()}
        carol = self.args.uploads - self.args.heavy - 1
        with ThreadPoolExecutor(max_workers=self.args.uploads) as pool:
            alice = [pool.submit(self.upload, clients["alice"], "alice", f"heavy-{n:02d}")
                     for n in range(self.args.heavy)]
            others: list[Future[None]] = [pool.submit(self.upload, clients["carol"], "carol", f"other-{n:02d}")
                                          for n in range(carol)]
            wait(alice)  # alice's builds are queued: now bob's one
            others.append(pool.submit(self.upload, clients["bob"], "bob", "single"))
            wait(others)

    def builds(self) -> list[tuple[str, str, float, float | None, float | None]]:
        """(owner, status, created, started, finished) of every build (epoch seconds), from the builds table."""
        from sqlalchemy import create_engine, select

        from spacehub.store.models import Build, Space

        engine = create_engine(self.server.env["SPACEHUB_DATABASE_URL"])
        try:
            with engine.connect() as conn:
                rows = conn.execute(select(Space.owner, Build.status, Build.created_at, Build.started_at,
                                           Build.finished_at).join(Space, Space.id == Build.space_id)).all()
        finally:
            engine.dispose()

        def epoch(moment: object) -> float | None:
            return moment.timestamp() if moment is not None else None  # type: ignore[attr-defined]

        return [(owner, str(status), epoch(created) or 0.0, epoch(started), epoch(finished))
                for owner, status, created, started, finished in rows]


def fairness(builds: list[tuple[str, str, float, float | None, float | None]]) -> list[str]:
    lines = ["| user | builds | ended | queue wait p50 (s) | queue wait max (s) | first started after (s) |",
             "|---|---|---|---|---|---|"]
    burst_start = min(created for owner, _s, created, _st, _f in builds if owner != STEADY_OWNER)
    for user in ("alice", "carol", "bob"):
        mine = [b for b in builds if b[0] == user]
        waits = [started - created for _o, _s, created, started, _f in mine if started is not None]
        ended = sum(1 for b in mine if b[4] is not None)
        first = min((started for *_r, started, _f in mine if started is not None), default=None)
        lines.append(f"| {user} | {len(mine)} | {ended} | {statistics.median(waits) if waits else float('nan'):.1f} "
                     f"| {max(waits) if waits else float('nan'):.1f} | "
                     f"{(first - burst_start) if first is not None else float('nan'):.1f} |")
    bob = next((b for b in builds if b[0] == "bob"), None)
    if bob is not None and bob[3] is not None:
        before = sum(1 for b in builds if b[0] == "alice" and b[3] is not None and b[3] < bob[3])
        heavy = sum(1 for b in builds if b[0] == "alice")
        lines.append("")
        lines.append(f"Fairness: bob's one build started after {before} of alice's {heavy} (queued before it); "
                     "0 would mean a user's backlog never delays another user's first build.")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--running", type=int, default=10, help="static apps serving steady traffic")
    parser.add_argument("--uploads", type=int, default=50, help="space uploads sent at once")
    parser.add_argument("--heavy", type=int, default=30, help="of those, alice's (one user's backlog)")
    parser.add_argument("--workers", type=int, default=2, help="build workers (the bound on concurrent builds)")
    parser.add_argument("--app-rps", type=float, default=20.0, help="steady requests/s to the running apps")
    parser.add_argument("--timeout", type=float, default=1800, help="give up waiting for the builds after this")
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    parser.add_argument("--log", type=Path, help="keep the platform's log in this file (its errors, say)")
    args = parser.parse_args()
    if args.uploads < args.heavy + 1:
        parser.error("--uploads must leave room for bob's one upload beside alice's --heavy")
    started = time.monotonic()
    load_avg = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    with tempfile.TemporaryDirectory(prefix="spacehub-bench-load-") as tmp:
        server = Server(Path(tmp) / "data", workers=str(args.workers))
        server.start(timeout=120)
        try:
            load = Load(server, args)
            for name in ("alice", "bob", "carol"):
                load.user(name)
            load.start_running_apps()
            threads = load.probes()
            time.sleep(3)  # a quiet baseline
            rss_before = max(load.rss)
            burst_at = time.monotonic()
            load.burst()
            uploads_s = time.monotonic() - burst_at
            deadline = time.monotonic() + args.timeout
            builds = load.builds()
            while time.monotonic() < deadline and any(b[4] is None for b in builds):
                time.sleep(1)
                builds = load.builds()
            builds_s = time.monotonic() - burst_at
            time.sleep(2)
            load.stop.set()
            for thread in threads:
                thread.join(10)
            rss_after = load.rss[-1]
        finally:
            server.stop()
            server.kill_apps()
            if args.log is not None:
                args.log.write_bytes(server.log.read_bytes())
    burst = [b for b in builds if b[0] != STEADY_OWNER]
    outcomes: dict[str, int] = {}
    for b in burst:
        outcomes[b[1]] = outcomes.get(b[1], 0) + 1
    mib = 1024 * 1024
    lines = [
        f"Load bench: one `spacehub serve` (process runtime, SQLite, {args.workers} build workers), {args.running} "
        f"static apps at {args.app_rps:g} req/s; then {args.uploads} space uploads at once (alice {args.heavy}, "
        f"carol {args.uploads - args.heavy - 1}, bob 1 once alice's are queued). {os.cpu_count()} CPUs, load "
        f"average at start {load_avg}.",
        "",
        f"Uploads accepted in {uploads_s:.1f} s; every build ended {builds_s:.1f} s after the burst began "
        f"({', '.join(f'{n} {status}' for status, n in sorted(outcomes.items()))}).",
        "",
        "| from a quiet baseline through the burst | requests | p50 ms | p99 ms | max ms | errors |",
        "|---|---|---|---|---|---|",
        f"| GET /health | {_ms(load.health)} |",
        f"| API (space info, list by author) | {_ms(load.api)} |",
        f"| running apps through the proxy | {_ms(load.apps)} |",
        f"| uploads (create + upload) | {_ms(load.uploads)} |",
        "",
        *(f"Errors, {what}: " + "; ".join(f"{n}x {kind}" for kind, n in probe.failures.items())
          for what, probe in (("/health", load.health), ("API", load.api), ("apps", load.apps),
                              ("uploads", load.uploads)) if probe.failures),
        "",
        f"Control plane memory (serve, workers, supervisor, Redis; RSS): {rss_before / mib:.0f} MiB before the "
        f"burst, {max(load.rss) / mib:.0f} MiB at its peak, {rss_after / mib:.0f} MiB after.",
        "",
        *fairness(builds),
    ]
    report = "\n".join(lines) + f"\n\n(bench took {time.monotonic() - started:.0f} s)\n"
    print(report)
    if args.out is not None:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
