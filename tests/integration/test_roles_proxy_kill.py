"""kill -9 of one of two `spacehub proxy` processes sharing the public port (SO_REUSEPORT), under load.

Separate roles on a real redis-server (api, two proxies, worker, supervisor), a running space, and many
concurrent clients through the public port: keep-alive ones (one connection, request after request) and ones
that open a new connection per request. One proxy is killed mid-load. Only connections that were open on the
killed process at the kill fail (each at most once); every request on any other connection, and every one on a
connection opened after the kill, succeeds; the surviving proxy stays ready and keeps answering throughout.

Restarting a killed role is its process manager's work (Compose's `restart: unless-stopped`, systemd's
`Restart=`): nothing in a role restarts itself. So the test does what the manager does, runs the same command
again, and checks that the new process joins the port beside the survivor, under the same load, and serves.
The manager's own part, Docker starting a killed proxy container again, is tested on the Compose stack
(tests/deploy/test_compose_stack.py); under `spacehub serve` the proxy is serve's own process.
"""

from __future__ import annotations

import http.client
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.faults import Role, static_tree, wait_for
from support.server import ADMIN_TOKEN, free_port, kill_apps

pytestmark = pytest.mark.timeout(600)

KEEP_ALIVE_CLIENTS = 10
NEW_CONNECTION_CLIENTS = 6
TITLE = "served under load"


def ok(url: str) -> httpx.Response | None:
    try:
        response = httpx.get(url, timeout=10)
    except httpx.HTTPError:
        return None
    return response if response.status_code == 200 else None


def connections_of(pid: int, port: int) -> set[int]:
    """The client ports of the TCP connections that process `pid` holds open on its listening `port` (its
    sockets' inodes, looked up in the kernel's table of TCP sockets)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    clients = set()
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if inode in inodes and int(local.split(":")[1], 16) == port and int(remote.split(":")[1], 16) != 0:
            clients.add(int(remote.split(":")[1], 16))
    return clients


@dataclass
class Outcome:
    client_port: int | None  # the connection's own port (None: it never connected)
    connected_at: float  # monotonic time its connect began
    started_at: float  # monotonic time the request began
    error: str | None  # None: a 200 with the page


class Load:
    """Concurrent clients through the public port to the space, each recording every request's outcome."""

    def __init__(self, port: int, host: str) -> None:
        self.port, self.host = port, host
        self.outcomes: list[Outcome] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._keep_alive, daemon=True) for _ in range(KEEP_ALIVE_CLIENTS)]
        self.threads += [threading.Thread(target=self._new_connections, daemon=True)
                         for _ in range(NEW_CONNECTION_CLIENTS)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(60)

    def _connect(self) -> tuple[http.client.HTTPConnection, float, int | None]:
        connected_at = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.connect()
        except OSError:
            return conn, connected_at, None
        return conn, connected_at, conn.sock.getsockname()[1]

    def _request(self, conn: http.client.HTTPConnection, close: bool) -> None:
        headers = {"Host": self.host, **({"Connection": "close"} if close else {})}
        conn.request("GET", "/", headers=headers)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200 or TITLE.encode() not in body:
            raise AssertionError(f"answer {response.status}: {body[:200]!r}")

    def _record(self, client_port: int | None, connected_at: float, started_at: float, error: str | None) -> None:
        with self.lock:
            self.outcomes.append(Outcome(client_port, connected_at, started_at, error))

    def _keep_alive(self) -> None:
        conn, connected_at, client_port = self._connect()
        while not self.stopping.is_set():
            started_at = time.monotonic()
            try:
                if client_port is None:
                    raise ConnectionError("connect failed")
                self._request(conn, close=False)
            except (OSError, http.client.HTTPException, AssertionError) as exc:
                self._record(client_port, connected_at, started_at, f"{type(exc).__name__}: {exc}")
                conn.close()  # this connection is lost: a client opens another
                conn, connected_at, client_port = self._connect()
                continue
            self._record(client_port, connected_at, started_at, None)
        conn.close()

    def _new_connections(self) -> None:
        while not self.stopping.is_set():
            conn, connected_at, client_port = self._connect()
            try:
                if client_port is None:
                    raise ConnectionError("connect failed")
                self._request(conn, close=True)
            except (OSError, http.client.HTTPException, AssertionError) as exc:
                self._record(client_port, connected_at, connected_at, f"{type(exc).__name__}: {exc}")
            else:
                self._record(client_port, connected_at, connected_at, None)
            finally:
                conn.close()

    def since(self, moment: float) -> list[Outcome]:
        with self.lock:
            return [o for o in self.outcomes if o.started_at >= moment]


def responses(health_port: int, space: str) -> float:
    """The 2xx answers for `space` that one proxy process has given (its own /metrics, beside its health)."""
    figures = httpx.get(f"http://127.0.0.1:{health_port}/metrics", timeout=10)
    assert figures.status_code == 200, figures.text[:500]
    return sum(sample.value for family in text_string_to_metric_families(figures.text) for sample in family.samples
               if sample.name == "spacehub_proxy_responses_total"
               and sample.labels == {"space": space, "status_class": "2xx"})


def test_killing_one_of_two_proxies_under_load_loses_only_its_connections(tmp_path, redis_server):
    port, api_port = free_port(), free_port()
    env = {**os.environ, "SPACEHUB_DATA_DIR": str(tmp_path / "data"), "SPACEHUB_REDIS_URL": redis_server.url,
           "SPACEHUB_PORT": str(port), "SPACEHUB_API_LISTEN": f"127.0.0.1:{api_port}",
           "SPACEHUB_ADMIN_TOKEN": ADMIN_TOKEN, "SPACEHUB_RECONCILE_INTERVAL_S": "1",
           "SPACEHUB_FREEZE_AFTER_S": "3600", "SPACEHUB_SLEEP_AFTER_S": "3600", "PYTHONUNBUFFERED": "1"}
    logs = tmp_path / "logs"
    logs.mkdir()
    health = {name: free_port() for name in ("proxy-1", "proxy-2", "worker", "supervisor")}
    roles: dict[str, Role] = {}
    load: Load | None = None

    def proxy(name: str) -> Role:
        return Role(name, ["proxy", "--health", f"127.0.0.1:{health[name]}"], env, logs)

    def ready(name: str) -> httpx.Response:
        return wait_for(f"{name} ready", lambda: ok(f"http://127.0.0.1:{health[name]}/ready"), 120)

    try:
        roles["api"] = Role("api", ["api"], env, logs)
        wait_for("the API answering", lambda: httpx.get(f"http://127.0.0.1:{api_port}/health", timeout=10), 120)
        roles["proxy-1"], roles["proxy-2"] = proxy("proxy-1"), proxy("proxy-2")
        roles["worker"] = Role("worker", ["worker", "--health", f"127.0.0.1:{health['worker']}"], env, logs)
        roles["supervisor"] = Role("supervisor", ["supervisor", "--health", f"127.0.0.1:{health['supervisor']}"],
                                   env, logs)
        for name in health:
            ready(name)
        wait_for("the API healthy with a worker", lambda: ok(f"http://127.0.0.1:{api_port}/health"), 120)

        public = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                              headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Host": f"localhost:{port}"})
        assert public.post("/api/repos/create", json={"type": "space", "name": "busy", "sdk": "static"}).is_success
        pushed = public.post("/api/spaces/admin/busy/upload", params={"filename": "site.tar.gz"},
                             content=static_tree(TITLE), headers={"Content-Type": "application/gzip"})
        assert pushed.status_code == 200, pushed.text
        host = f"admin-busy.space.localhost:{port}"

        def page() -> bool | None:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                response = client.get("/", headers={"Host": host})
            return True if response.status_code == 200 and TITLE in response.text else None

        wait_for("the space served through the proxies", page, 180)
        for _ in range(5):  # both proxies know the route before the load starts
            assert page()

        # The survivor's readiness, watched all along.
        survivor_ready: list[int] = []
        watching = threading.Event()

        def watch() -> None:
            while not watching.is_set():
                try:
                    survivor_ready.append(httpx.get(f"http://127.0.0.1:{health['proxy-2']}/ready",
                                                    timeout=10).status_code)
                except httpx.HTTPError as exc:
                    survivor_ready.append(-1)
                    print("survivor /ready failed:", exc)
                time.sleep(0.2)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()

        load = Load(port, host)
        load.start()
        wait_for("load on both proxies", lambda: all(responses(health[n], "admin/busy") > 50
                                                       for n in ("proxy-1", "proxy-2")) or None, 120)
        victim, survivor = roles["proxy-1"], roles["proxy-2"]
        survivor_before = responses(health["proxy-2"], "admin/busy")
        on_victim = connections_of(victim.process.pid, port)
        on_survivor = connections_of(survivor.process.pid, port)
        snapshot_at = time.monotonic()
        os.kill(victim.process.pid, signal.SIGKILL)
        victim.process.wait()  # reaped: its sockets are closed, the kernel sends new connections to the survivor
        killed_at = time.monotonic()

        # Load goes on against the survivor alone.
        wait_for("requests after the kill", lambda: len([o for o in load.since(killed_at)
                                                         if o.connected_at > killed_at]) > 200 or None, 180)
        assert survivor.process.poll() is None
        assert responses(health["proxy-2"], "admin/busy") > survivor_before

        # The role restarts: the same command again, as its process manager would; it joins the port beside the
        # survivor under the same load, and takes a share of the new connections.
        roles["proxy-1"] = proxy("proxy-1")
        ready("proxy-1")
        restarted_at = time.monotonic()
        wait_for("the restarted proxy serving", lambda: responses(health["proxy-1"], "admin/busy") > 20 or None, 120)
        load.stop()
        watching.set()
        watcher.join(30)

        outcomes = load.outcomes
        failed = [o for o in outcomes if o.error is not None]
        print(f"{len(outcomes)} requests, {len(failed)} failed; {len(on_victim)} connections on the killed proxy, "
              f"{len(on_survivor)} on the survivor at the kill")
        assert on_victim, "no connection was open on the killed proxy: the kill hit no load"
        # Every failure is a connection error on a connection open at the kill on the killed process: one of its
        # connections then, one opened between that look and its end, or one it had not accepted yet (never
        # answered: the kernel had queued it on the killed process's listening socket, which the look cannot see).
        answered = {(o.client_port, o.connected_at) for o in outcomes if o.error is None}
        for o in failed:
            assert o.connected_at < killed_at, o
            assert (o.client_port is None or o.client_port in on_victim or o.connected_at >= snapshot_at
                    or (o.client_port, o.connected_at) not in answered), o
            assert not o.error.startswith("AssertionError"), o  # never a wrong answer: only a lost connection
        assert not any(o.client_port in on_survivor for o in failed)
        # Each lost connection fails once: its client reconnects and succeeds from then on.
        lost = [o.client_port for o in failed if o.client_port is not None]
        assert len(lost) == len(set(lost)), lost
        # After the kill: 100% success on every connection opened after it, keep-alive and new ones alike.
        after = [o for o in outcomes if o.connected_at >= killed_at]
        assert len(after) > 200 and all(o.error is None for o in after), [o for o in after if o.error][:5]
        # On the survivor's connections from before the kill too: none of them failed (checked above), and they
        # went on answering after it.
        assert any(o.client_port in on_survivor and o.started_at > killed_at and o.error is None for o in outcomes)
        assert len([o for o in outcomes if o.started_at >= restarted_at]) > 0
        # The survivor was ready at every look, before, during and after the kill.
        assert survivor_ready and set(survivor_ready) == {200}, survivor_ready

        for name in ("worker", "supervisor", "proxy-1", "proxy-2", "api"):
            assert roles[name].stop() == 0, (name, roles[name].log.read_text()[-3000:])
    finally:
        if load is not None:
            load.stop()
        for role in roles.values():
            role.kill()
        kill_apps(tmp_path / "data")
