"""`make bench-proxy`: spacehub's proxy side by side with nginx and with no proxy at all, on the same upstream.

Three targets, all on 127.0.0.1, all forwarding to one fast upstream (uvicorn + httptools + uvloop, 200-byte
responses; `bench_upstream.py`):
  direct    wrk talks to the upstream itself
  nginx     Debian's nginx, one worker (the proxy is one process too), configured for streaming: proxy_buffering
            off, request buffering off, HTTP/1.1 keep-alive to the upstream, forwarding headers set
  spacehub  `ProxyServer` with its full contract: the production resolver (`SpaceResolver`) on a space route,
            credential stripping, activity hooks (`bench_spacehub_proxy.py`)

Every request carries a platform token and session cookie (which spacehub strips and nginx is told to drop).
Measured, in rounds that interleave the targets (order rotated each round), reported as medians:
  - requests/s at 50 connections and at 1 connection (wrk, one thread), and the target's own CPU time per
    request at 50 connections (from /proc, so a slower proxy cannot hide behind a saturated machine);
  - latency p50/p99 at 1 connection and what the proxy adds to the direct figure;
  - SSE event delay: the upstream stamps each event with the time it sent it; a client here records arrival.
Prints a markdown table (and writes it to --out if given). Needs `wrk` and `nginx` (deploy/setup/bench.sh).

Why many short rounds: load generator, upstream and proxy are three busy processes on (here) two CPUs, and where
the scheduler puts them moves any one proxy's cost per request by a quarter either way (pinned by hand, either
proxy comes out ahead depending on which process it shares a CPU with). Each round samples whatever placement it
gets, for every target alike; the medians over many rounds are the steady figure, and the spread of the
per-round ratio to nginx is printed with them.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPACE_HOST = "alice-demo.space.localhost"
# What a browser or client of a private-looking space sends: the platform's credentials, and an app cookie.
REQUEST_HEADERS = (
    f"Host: {SPACE_HOST}",
    "Authorization: Bearer sh_0123456789abcdef0123456789abcdef",
    "Cookie: spacehub_session=s3ss10n; theme=dark",
    "User-Agent: spacehub-bench",
    "Accept: */*",
)
TARGETS = ("direct", "nginx", "spacehub")

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream app {{
        server 127.0.0.1:{upstream_port};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=1024;
        keepalive_requests 1000000;
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-HF-Authorization "";
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 300s;
        }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (fields 14 and 15 of /proc/PID/stat, in clock ticks)."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in children.read_text().split()] if children.exists() else []


@dataclass
class Target:
    name: str
    port: int
    process: subprocess.Popen[bytes] | None = None

    def worker_pids(self) -> list[int]:
        """The processes that do the forwarding (nginx: its worker, not the idle master)."""
        if self.process is None:
            return []
        return child_pids(self.process.pid) if self.name == "nginx" else [self.process.pid]


@contextmanager
def running(workdir: Path) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, Target]]]:
    """The upstream and the three targets, stopped on exit whatever happens."""
    processes: list[subprocess.Popen[bytes]] = []

    def spawn(args: list[str], port: int, **kwargs: object) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, **kwargs)  # type: ignore[call-overload]
        processes.append(process)
        wait_listening(port, process)
        return process

    try:
        upstream_port = free_port()
        upstream = spawn([sys.executable, str(HERE / "bench_upstream.py"), str(upstream_port)], upstream_port)
        targets = {"direct": Target("direct", upstream_port)}

        nginx_port = free_port()
        prefix = workdir / "nginx"
        prefix.mkdir()
        conf = prefix / "nginx.conf"
        conf.write_text(NGINX_CONF.format(prefix=prefix, port=nginx_port, upstream_port=upstream_port))
        nginx = spawn(["nginx", "-p", str(prefix), "-c", str(conf), "-e", "stderr"], nginx_port)
        targets["nginx"] = Target("nginx", nginx_port, nginx)

        proxy_port = free_port()
        script = str(HERE / "bench_spacehub_proxy.py")
        proxy = spawn([sys.executable, script, str(proxy_port), str(upstream_port), str(workdir / "data")], proxy_port)
        targets["spacehub"] = Target("spacehub", proxy_port, proxy)
        yield upstream, targets
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# wrk


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _seconds(text: str) -> float:
    number, unit = re.fullmatch(r"([0-9.]+)([a-z]+)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


@dataclass
class WrkResult:
    rps: float
    requests: int
    p50_s: float
    p99_s: float
    errors: int


def wrk(port: int, connections: int, duration_s: int) -> WrkResult:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{duration_s}s", "--latency", "--timeout", "5s"]
    for header in REQUEST_HEADERS:
        args += ["-H", header]
    args.append(f"http://127.0.0.1:{port}/")
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=duration_s + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p50 = _seconds(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _seconds(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(match.group(1))
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(n) for n in match.groups())
    return WrkResult(rps, requests, p50, p99, errors)


# SSE


def sse_delays(port: int, events: int, gap_s: float) -> list[float]:
    """Seconds from each event's send (stamped by the upstream) to its arrival here, over one raw connection."""
    delays: list[float] = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = "\r\n".join([f"GET /sse?n={events}&gap={gap_s} HTTP/1.1", *REQUEST_HEADERS, "Connection: close"])
        sock.sendall(head.encode() + b"\r\n\r\n")
        buffered = b""
        while len(delays) < events:
            data = sock.recv(65536)
            arrived = time.monotonic_ns()
            if not data:
                break
            buffered += data
            for sent in re.findall(rb"data: (\d+)\n\n", buffered):
                delays.append((arrived - int(sent)) / 1e9)
            buffered = buffered[buffered.rfind(b"\n\n") + 2 :] if b"\n\n" in buffered else buffered
    if len(delays) != events:
        raise RuntimeError(f"SSE through port {port}: {len(delays)} of {events} events arrived")
    return delays


# The run


@dataclass
class Samples:
    rps50: list[float] = field(default_factory=list)
    cpu_us50: list[float] = field(default_factory=list)
    rps1: list[float] = field(default_factory=list)
    p50_1: list[float] = field(default_factory=list)
    p99_1: list[float] = field(default_factory=list)
    sse: list[float] = field(default_factory=list)
    errors: int = 0


def measure(targets: dict[str, Target], upstream_pid: int, args: argparse.Namespace) -> dict[str, Samples]:
    samples = {name: Samples() for name in TARGETS}
    for name in TARGETS:  # warm up: pooled connections, caches, nginx's worker
        wrk(targets[name].port, 50, 1)
    for round_no in range(args.rounds):
        order = TARGETS[round_no % 3 :] + TARGETS[: round_no % 3]
        for name in order:
            target, got = targets[name], samples[name]
            pids = target.worker_pids()
            before = cpu_seconds(pids) if pids else 0.0
            many = wrk(target.port, 50, args.duration)
            if pids:
                got.cpu_us50.append((cpu_seconds(pids) - before) / many.requests * 1e6)
            one = wrk(target.port, 1, args.duration_one)
            got.rps50.append(many.rps)
            got.rps1.append(one.rps)
            got.p50_1.append(one.p50_s)
            got.p99_1.append(one.p99_s)
            got.errors += many.errors + one.errors
            got.sse += sse_delays(target.port, args.sse_events, args.sse_gap)
        print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    return samples


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def table(samples: dict[str, Samples], args: argparse.Namespace, load: str) -> str:
    nginx = samples["nginx"]
    direct = samples["direct"]
    lines = [
        f"Proxy bench: 127.0.0.1, 200-byte responses, wrk -t1, medians of {args.rounds} interleaved rounds "
        f"({args.duration:g} s at 50 connections, {args.duration_one:g} s at 1); SSE: {args.sse_events} events "
        f"every {args.sse_gap:g} s per round. {os.cpu_count()} CPUs, load average at start {load}.",
        "",
        "| target | req/s @50 | vs nginx | CPU µs/req @50 | req/s @1 | vs nginx | p50 @1 | p99 @1 "
        "| added p50 | added p99 | SSE delay p50 | SSE delay p99 | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in TARGETS:
        got = samples[name]
        rps50, rps1 = _median(got.rps50), _median(got.rps1)
        p50, p99 = _median(got.p50_1), _median(got.p99_1)
        cpu = f"{_median(got.cpu_us50):.0f}" if got.cpu_us50 else "–"
        added = "–" if name == "direct" else f"{(p50 - _median(direct.p50_1)) * 1e3:.3f} ms"
        added99 = "–" if name == "direct" else f"{(p99 - _median(direct.p99_1)) * 1e3:.3f} ms"
        lines.append(
            f"| {name} | {rps50:,.0f} | {rps50 / _median(nginx.rps50):.0%} | {cpu} | {rps1:,.0f} "
            f"| {rps1 / _median(nginx.rps1):.0%} | {p50 * 1e3:.3f} ms | {p99 * 1e3:.3f} ms | {added} | {added99} "
            f"| {_median(got.sse) * 1e3:.2f} ms | {_percentile(got.sse, 0.99) * 1e3:.2f} ms | {got.errors} |"
        )
    ours = samples["spacehub"]
    ratio = _median(ours.rps50) / _median(nginx.rps50)
    added_ms = (_median(ours.p50_1) - _median(direct.p50_1)) * 1e3
    per_round = [mine / theirs for mine, theirs in zip(ours.rps50, nginx.rps50, strict=True)]
    low, _, high = statistics.quantiles(per_round, n=4) if len(per_round) > 1 else (per_round[0],) * 3
    lines += [
        "",
        f"Per round, spacehub's requests/s at 50 connections over nginx's in the same round: median "
        f"{statistics.median(per_round):.0%}, middle half {low:.0%}–{high:.0%}, all {min(per_round):.0%}–"
        f"{max(per_round):.0%} ({len(per_round)} rounds).",
        "",
        f"Targets (issue 6): spacehub at {ratio:.0%} of nginx's requests/s at 50 connections (target: 90% or more); "
        f"{added_ms:.3f} ms added at p50 (target: under 0.5 ms).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds (medians are reported)")
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run at 50 connections")
    parser.add_argument("--duration-one", type=int, default=1, help="seconds per wrk run at 1 connection")
    parser.add_argument("--sse-events", type=int, default=10)
    parser.add_argument("--sse-gap", type=float, default=0.05)
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    parser.add_argument(
        "--nice",
        type=int,
        default=-10,
        help="niceness for this run and everything it starts, where allowed (root): on a shared machine the "
        "neighbours' load then disturbs the measurement less; 0 leaves it alone",
    )
    args = parser.parse_args()
    if args.nice:
        try:
            os.nice(args.nice)
        except PermissionError:
            print(f"(not allowed to renice by {args.nice}: running at the current priority)", file=sys.stderr)
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed: run `bash deploy/setup/bench.sh` (as root)")
    started = time.monotonic()
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    with tempfile.TemporaryDirectory(prefix="spacehub-bench-proxy-") as tmp:
        os.chmod(tmp, 0o755)  # nginx's worker may run as another user
        with running(Path(tmp)) as (upstream, targets):
            samples = measure(targets, upstream.pid, args)
    report = table(samples, args, load)
    report += f"\n(bench took {time.monotonic() - started:.0f} s)\n"
    print(report)
    if args.out is not None:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
