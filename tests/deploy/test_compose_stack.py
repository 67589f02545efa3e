"""The production stack of deploy/compose/ brought up from this repo with Debian's docker-compose: PostgreSQL,
Redis, spacehub's roles as services of their own (two proxies) and Caddy (TLS from its internal CA). A space is
pushed over HTTPS with huggingface_hub, served at https://<label>.<spaces domain> through Caddy and called with
gradio_client; `down` and `up` keep everything, and the stack's PostgreSQL holds it; one proxy dies under
traffic and the other serves while it comes back; a backup taken inside the stack under writes restores into a
wiped stack. The cases share one stack, in this order (the last one wipes it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.faults import wait_for
from support.secretapp import write_space
from support.stack import PROXY_HOSTS, ROLES, SPACES_DOMAIN, Stack, app_containers, running_stack

pytestmark = [pytest.mark.docker, pytest.mark.timeout(3000)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("stack")) as running:
        yield running


PUSH_AND_CALL = """
    import os, time
    from huggingface_hub import HfApi
    from gradio_client import Client
    api = HfApi(endpoint=os.environ["URL"], token=os.environ["TOKEN"])
    api.create_repo("admin/hello", repo_type="space", space_sdk="gradio", exist_ok=True)
    api.upload_folder(repo_id="admin/hello", repo_type="space", folder_path=os.environ["EXAMPLE"])
    deadline = time.monotonic() + 600
    while (stage := api.get_space_runtime("admin/hello").stage) != "RUNNING":
        assert stage not in ("BUILD_ERROR", "RUNTIME_ERROR", "CONFIG_ERROR"), stage
        assert time.monotonic() < deadline, stage
        time.sleep(2)
    print("HOST", api.space_info("admin/hello").host)
    print("RESULT", Client(os.environ["SPACE_URL"], token=os.environ["TOKEN"]).predict("Ada", api_name="/greet"))
"""

CALL_AGAIN = """
    import os, time
    from huggingface_hub import HfApi
    from gradio_client import Client
    api = HfApi(endpoint=os.environ["URL"], token=os.environ["TOKEN"])
    deadline = time.monotonic() + 600
    while (stage := api.get_space_runtime("admin/hello").stage) != "RUNNING":
        assert time.monotonic() < deadline, stage
        time.sleep(2)
    print("RESULT", Client(os.environ["SPACE_URL"], token=os.environ["TOKEN"]).predict("Bo", api_name="/greet"))
"""


def test_push_over_https_then_call_through_caddy(stack: Stack) -> None:
    out = stack.client(PUSH_AND_CALL)
    assert f"HOST https://admin-hello.{SPACES_DOMAIN}:{stack.https_port}" in out
    assert "RESULT Hello Ada!" in out
    # Each role in a container of its own, running and ready by its own health check (the /ready of its health
    # listener; for the API, its answer); nothing runs `spacehub serve`.
    for service, role in ROLES.items():
        container = stack.container(service)
        assert container["Config"]["Cmd"][0] == role, (service, container["Config"]["Cmd"])
        assert container["State"]["Status"] == "running", (service, container["State"])
        assert container["State"]["Health"]["Status"] == "healthy", (service, container["State"]["Health"])
    assert "spacehub_runner.jobs.build(" in stack.compose("logs", "worker-builds").stdout  # the build ran there
    # The app runs in the whole sandbox: read-only root, writing only to its own capped disk, which the stack's
    # platform mounted under the disks folder and the host (dockerd) sees there.
    (app,) = app_containers()
    assert app["HostConfig"]["ReadonlyRootfs"] is True
    scratch = str(stack.disks.resolve() / "scratch" / app["Name"].lstrip("/"))
    assert any(line.split()[1] == scratch and line.split()[2] == "ext4"
               for line in Path("/proc/self/mounts").read_text().splitlines()), scratch
    tmp = next(m for m in app["Mounts"] if m["Destination"] == "/tmp")
    device = json.loads(subprocess.run(["docker", "volume", "inspect", tmp["Name"]], capture_output=True,
                                       text=True, check=True).stdout)[0]["Options"]["device"]
    assert device.startswith(scratch + "/"), device


def test_down_and_up_keeps_everything_in_the_stacks_postgres(stack: Stack) -> None:
    stack.compose("down", timeout=600)
    stack.compose("up", "-d", timeout=900)
    stack.wait_healthy()
    assert "admin/hello" in _psql(stack, "select key from spaces").split()
    assert "RESULT Hello Bo!" in stack.client(CALL_AGAIN)


def _psql(stack: Stack, query: str) -> str:
    return stack.compose("exec", "-T", "postgres", "runuser", "-u", "postgres", "--", "psql", "-p",
                         stack.env["POSTGRES_PORT"], "-d", "spacehub", "-tAc", query).stdout


# -- one proxy dies under traffic -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    started: float  # time.monotonic()
    outcome: str  # the status code, or the error


class Traffic:
    """Clients calling a space through Caddy over TLS, each on its own kept-alive connection, until stopped."""

    def __init__(self, url: str, ca: Path, clients: int) -> None:
        self.url, self.ca, self.clients = url, ca, clients
        self.sent: list[Sent] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop) for _ in range(clients)]

    def _loop(self) -> None:
        with httpx.Client(verify=str(self.ca), timeout=30) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    outcome = str(client.get(self.url).status_code)
                except httpx.HTTPError as exc:
                    outcome = repr(exc)
                self.sent.append(Sent(started, outcome))

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def since(self, moment: float, until: float = float("inf")) -> list[Sent]:
        return [s for s in list(self.sent) if moment <= s.started < until]


def _answered(stack: Stack, proxy: str) -> float:
    """The space's 2xx answers counted by one proxy process (its own /metrics, beside its /ready)."""
    figures = httpx.get(f"http://{PROXY_HOSTS[proxy]}:{stack.env['PROXY_HEALTH_PORT']}/metrics", timeout=10)
    figures.raise_for_status()
    return sum(sample.value for family in text_string_to_metric_families(figures.text) for sample in family.samples
               if sample.name == "spacehub_proxy_responses_total"
               and sample.labels == {"space": "admin/hello", "status_class": "2xx"})


def _ready(stack: Stack, proxy: str) -> bool | None:
    url = f"http://{PROXY_HOSTS[proxy]}:{stack.env['PROXY_HEALTH_PORT']}/ready"
    return True if httpx.get(url, timeout=5).status_code == 200 else None


def test_a_proxy_killed_under_traffic_the_other_serves_and_it_comes_back(stack: Stack) -> None:
    url = stack.space_url("admin-hello") + "/"
    clients = 4
    with Traffic(url, stack.ca, clients) as traffic:
        # Both proxies serve: Caddy spreads the clients' requests over them.
        wait_for("both proxies answering the space", lambda: True if min(
            _answered(stack, "proxy-1"), _answered(stack, "proxy-2")) > 0 else None, 60)
        victim = stack.container("proxy-1")
        # A crash, as the kernel's OOM killer or a fault would end it. (`docker kill` would be a stop by hand,
        # which Docker's restart policies leave stopped, by design.)
        os.kill(victim["State"]["Pid"], signal.SIGKILL)
        killed = time.monotonic()
        survivor_before = _answered(stack, "proxy-2")

        def restarted() -> dict[str, Any] | None:
            now = stack.container("proxy-1")
            state = now["State"]
            healthy = state["Status"] == "running" and state.get("Health", {}).get("Status") == "healthy"
            return now if healthy and now["RestartCount"] > victim["RestartCount"] else None

        # Docker starts it again (restart: unless-stopped): the same container, its process new, ready again.
        again = wait_for("the killed proxy restarted and healthy", restarted, 180, every=0.5)
        back = time.monotonic()
        assert again["Id"] == victim["Id"] and again["State"]["Pid"] != victim["State"]["Pid"]
        assert _ready(stack, "proxy-1")
        # Caddy sends it requests again (its figures start from zero in the new process).
        wait_for("Caddy sending requests to the restarted proxy", lambda: True if _answered(
            stack, "proxy-1") > 0 else None, 60)
        survivor_after = _answered(stack, "proxy-2")
        ended = time.monotonic()

    down = traffic.since(killed, back)
    after = traffic.since(killed)
    failed = [s for s in after if s.outcome != "200"]
    # Requests sent while the killed proxy was down or starting again were served (by the other), and so was
    # everything else sent after the kill; at most the requests in flight on the killed process at that moment
    # (one per client) could be lost, and Caddy retries those GETs on the other proxy.
    assert down, "no request went out while the proxy was down"
    assert not failed, failed[:10]
    assert survivor_after > survivor_before
    assert len([s for s in traffic.since(0, killed) if s.outcome != "200"]) <= clients
    print(f"\nproxy killed: {len(down)} requests while it was down or starting again ({back - killed:.1f} s), "
          f"{len(after)} after the kill in {ended - killed:.1f} s, none failed")


# -- backup and restore inside the stack ----------------------------------------------------------------------------

PUSH_SECRET_SPACE = """
    import os, time
    from huggingface_hub import HfApi
    api = HfApi(endpoint=os.environ["URL"], token=os.environ["TOKEN"])
    api.create_repo("admin/kept", repo_type="space", space_sdk="gradio")
    api.add_space_secret("admin/kept", "GREETING", "hello from before")
    api.upload_folder(repo_id="admin/kept", repo_type="space", folder_path=os.environ["FOLDER"])
    deadline = time.monotonic() + 600
    while (stage := api.get_space_runtime("admin/kept").stage) != "RUNNING":
        assert stage not in ("BUILD_ERROR", "RUNTIME_ERROR", "CONFIG_ERROR"), stage
        assert time.monotonic() < deadline, stage
        time.sleep(2)
"""

# Write load: bob commits to a model of his until told to stop, printing each commit.
KEEP_WRITING = """
    import os, pathlib
    from huggingface_hub import HfApi
    bob = HfApi(endpoint=os.environ["URL"], token=os.environ["BOB"])
    bob.create_repo("bob/weights")
    stop, n = pathlib.Path(os.environ["STOP"]), 0
    while not stop.exists():
        info = bob.upload_file(path_or_fileobj=f"version {n}\\n".encode(), path_in_repo="weights.txt",
                               repo_id="bob/weights", commit_message=f"v{n}")
        print("COMMIT", info.oid, flush=True)
        n += 1
"""

CHECK_RESTORED = """
    import os, time
    import httpx
    from huggingface_hub import HfApi, hf_hub_download
    from gradio_client import Client
    bob = HfApi(endpoint=os.environ["URL"], token=os.environ["BOB"])
    print("WHOAMI", bob.whoami()["name"])
    wrong = httpx.get(os.environ["URL"] + "/api/whoami-v2", headers={"Authorization": "Bearer sh_not_a_real_token_0"})
    print("WRONG", wrong.status_code)
    print("WEIGHTS", bob.model_info("bob/weights").sha)
    path = hf_hub_download("bob/weights", "weights.txt", endpoint=os.environ["URL"], token=os.environ["BOB"],
                           cache_dir=os.environ["CACHE"])
    print("CONTENT", open(path).read().strip())
    admin = HfApi(endpoint=os.environ["URL"], token=os.environ["TOKEN"])
    deadline = time.monotonic() + 600
    for space in ("admin/kept", "admin/hello"):
        while (stage := admin.get_space_runtime(space).stage) != "RUNNING":
            assert stage not in ("BUILD_ERROR", "RUNTIME_ERROR", "CONFIG_ERROR"), (space, stage)
            assert time.monotonic() < deadline, (space, stage)
            time.sleep(2)
    print("KEPT", httpx.get(os.environ["KEPT_URL"] + "/", timeout=30).text)
    print("RESULT", Client(os.environ["SPACE_URL"], token=os.environ["TOKEN"]).predict("Cy", api_name="/greet"))
"""


def _installation(stack: Stack) -> str:
    return str(httpx.get(f"{stack.url}/health", verify=str(stack.ca), timeout=30).json()["installation"])


def _wait_postgres(stack: Stack) -> None:
    wait_for("the stack's PostgreSQL answering", lambda: True if stack.compose(
        "exec", "-T", "postgres", "runuser", "-u", "postgres", "--", "psql", "-p", stack.env["POSTGRES_PORT"],
        "-d", "spacehub", "-tAc", "select 1", check=False).stdout.strip() == "1" else None, 120, every=1)


def test_backup_in_the_stack_under_writes_then_restore_into_a_wiped_stack(stack: Stack, tmp_path: Path) -> None:
    # Before: bob with a token, a space of admin's whose app shows its secret, bob writing to a model.
    stack.admin("users", "create", "bob")
    bob = stack.admin("token", "create", "--user", "bob").strip().splitlines()[-1]
    folder = write_space(tmp_path / "kept")
    stack.client(PUSH_SECRET_SPACE, FOLDER=str(folder))
    kept_url = stack.space_url("admin-kept")
    assert httpx.get(kept_url + "/", verify=str(stack.ca), timeout=30).text == "secret=hello from before"
    installation = _installation(stack)

    backups = tmp_path / "backups"
    backups.mkdir()
    stop, written = tmp_path / "stop-writing", tmp_path / "written.txt"
    with open(written, "w") as out:
        writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(KEEP_WRITING)], stdout=out,
                                  stderr=subprocess.PIPE, text=True,
                                  env=stack.client_env(BOB=bob, STOP=str(stop)))
    try:
        wait_for("bob's first commits", lambda: True if written.read_text().count("COMMIT") >= 2 else None, 300,
                 every=0.5)
        # The backup, inside the stack while it serves and bob writes: a one-off container of `tools`.
        summary = stack.tools(backups, "backup", "/backups/nightly")
        stop.touch()
        _, errors = writer.communicate(timeout=120)
    finally:
        stop.touch()
        if writer.poll() is None:
            writer.kill()  # our own child
            writer.wait(30)
    assert writer.returncode == 0, errors[-3000:]
    commits = [line.split()[1] for line in written.read_text().splitlines() if line.startswith("COMMIT")]
    assert len(commits) >= 3, commits
    assert "3 repositories" in summary, summary
    manifest = json.loads((backups / "nightly" / "manifest.json").read_text())
    assert manifest["database"] == "postgresql" and manifest["tables"]["users"] == 2, manifest
    assert {"secrets.key", "secret.key"} <= set(manifest["files"]), manifest

    # Wiped: the apps, every volume of the stack (its PostgreSQL, Redis, data, Caddy's CA), the apps' disks.
    stack.wipe()
    assert not app_containers()
    # An empty stack's databases, the restore into them, then the roles (the API's first start on an empty
    # database would make the admin user, and a restore goes only into an empty install).
    stack.prepare_host()
    stack.compose("up", "-d", "postgres", "redis", timeout=900)
    _wait_postgres(stack)
    assert _psql(stack, "select count(*) from information_schema.tables where table_name = 'users'").strip() == "0"
    restored = stack.tools(backups, "restore", "/backups/nightly")
    assert "Restored" in restored, restored
    stack.compose("up", "-d", timeout=900)
    stack.wait_healthy()

    # The same installation, in the new stack's PostgreSQL; bob's token authenticates (its hash came back),
    # another does not; his model has a commit at least as new as the database's record; both spaces rebuild
    # and serve through Caddy over TLS, the kept one's secret opened with the restored key.
    assert _installation(stack) == installation
    assert "bob" in _psql(stack, "select name from users").split()
    out = stack.client(CHECK_RESTORED, BOB=bob, CACHE=str(tmp_path / "cache"), KEPT_URL=kept_url)
    assert "WHOAMI bob" in out and "WRONG 401" in out, out
    sha = next(line.split()[1] for line in out.splitlines() if line.startswith("WEIGHTS"))
    assert sha in commits, (sha, commits)
    assert "CONTENT version " in out, out
    assert "KEPT secret=hello from before" in out, out
    assert "RESULT Hello Cy!" in out, out
