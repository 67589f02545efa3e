"""The roles as separate processes against one database and one Redis: `spacehub api`, two `spacehub proxy`
sharing the public port, `spacehub worker` and `spacehub supervisor`; each answers its own health and readiness,
a space is pushed and served through them, and each stops gracefully on SIGTERM (one proxy stopping leaves the
other serving)."""

from __future__ import annotations

import os

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.faults import Role, static_tree, wait_for
from support.server import ADMIN_TOKEN, free_port, kill_apps

pytestmark = pytest.mark.timeout(600)




def get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=10)
    except httpx.HTTPError:
        return None


def ok(url: str) -> httpx.Response | None:
    response = get(url)
    return response if response is not None and response.status_code == 200 else None


def test_roles_run_apart_answer_health_and_stop_gracefully(tmp_path, redis_server):
    port, api_port = free_port(), free_port()
    env = {**os.environ, "SPACEHUB_DATA_DIR": str(tmp_path / "data"), "SPACEHUB_REDIS_URL": redis_server.url,
           "SPACEHUB_PORT": str(port), "SPACEHUB_API_LISTEN": f"127.0.0.1:{api_port}",
           "SPACEHUB_ADMIN_TOKEN": ADMIN_TOKEN, "SPACEHUB_RECONCILE_INTERVAL_S": "1",
           "SPACEHUB_FREEZE_AFTER_S": "3600", "PYTHONUNBUFFERED": "1"}
    logs = tmp_path / "logs"
    logs.mkdir()
    health = {name: free_port() for name in ("proxy-1", "proxy-2", "worker", "supervisor")}
    roles: dict[str, Role] = {}
    try:
        roles["api"] = Role("api", ["api"], env, logs)
        api = f"http://127.0.0.1:{api_port}"
        # Alone, with no worker yet, the API is up and its health says what is missing.
        first = wait_for("the API answering", lambda: get(f"{api}/health"), 120)
        assert first.status_code == 503 and "workers" in first.json()["error"], first.text

        for name in ("proxy-1", "proxy-2"):
            roles[name] = Role(name, ["proxy", "--health", f"127.0.0.1:{health[name]}"], env, logs)
        roles["worker"] = Role("worker", ["worker", "--health", f"127.0.0.1:{health['worker']}"], env, logs)
        roles["supervisor"] = Role("supervisor", ["supervisor", "--health", f"127.0.0.1:{health['supervisor']}"],
                                   env, logs)
        for name, health_port in health.items():
            for path in ("/ready", "/health"):
                answer = wait_for(f"{name} {path} 200", lambda url=f"http://127.0.0.1:{health_port}{path}": ok(url),
                                  120)
                assert answer.json()["role"] == name.split("-")[0]
        wait_for("the API healthy with a worker", lambda: ok(f"{api}/health"), 120)

        public = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                              headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Host": f"localhost:{port}"})
        assert public.get("/health").status_code == 200  # the API through either proxy
        assert public.post("/api/repos/create", json={"type": "space", "name": "page", "sdk": "static"}).is_success
        pushed = public.post("/api/spaces/admin/page/upload", params={"filename": "site.tar.gz"},
                             content=static_tree("served by the roles"), headers={"Content-Type": "application/gzip"})
        assert pushed.status_code == 200, pushed.text
        space = {"Host": f"admin-page.space.localhost:{port}"}

        def page() -> bool | None:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                response = client.get("/", headers=space)
            return True if response.status_code == 200 and "served by the roles" in response.text else None

        wait_for("the space served through the proxies", page, 180)

        # Each proxy's own figures, beside its health; the space's answers, summed over both, move with traffic.
        def answered() -> float:
            total = 0.0
            for name in ("proxy-1", "proxy-2"):
                figures = httpx.get(f"http://127.0.0.1:{health[name]}/metrics", timeout=10)
                assert figures.status_code == 200 and "spacehub_proxy_routes 1.0" in figures.text, figures.text[:2000]
                total += sum(sample.value for family in text_string_to_metric_families(figures.text)
                             for sample in family.samples if sample.name == "spacehub_proxy_responses_total"
                             and sample.labels == {"space": "admin/page", "status_class": "2xx"})
            return total

        before = answered()
        for _ in range(10):  # a connection each: the kernel spreads them over both processes
            assert page()
        assert answered() - before == 10

        # One proxy stops (gracefully, exit 0); the other keeps the port and serves.
        assert roles["proxy-1"].stop() == 0
        assert "spacehub proxy stopped" in roles["proxy-1"].log.read_text()
        for _ in range(20):
            assert page()
        for name in ("worker", "supervisor", "proxy-2", "api"):
            assert roles[name].stop() == 0, (name, roles[name].log.read_text()[-3000:])
    finally:
        for role in roles.values():
            role.kill()
        kill_apps(tmp_path / "data")
