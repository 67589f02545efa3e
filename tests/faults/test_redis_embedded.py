"""kill -9 of the embedded redis-server under a real `spacehub serve`: it is started again; meanwhile /health
and a push that cannot be queued answer 503 JSON with Retry-After (never a 500 page), the proxy keeps serving
the routes it knows, and once Redis is back a push builds and serves."""

from __future__ import annotations

import os
import signal

import httpx
import pytest

from support.faults import embedded_redis_pid, serving, static_tree, wait_for
from support.server import Server

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def server(tmp_path):
    # Checked every 8 s: a window wide enough to watch the outage (a real install restarts it within 1 s).
    with serving(tmp_path / "data", redis_check_s="8") as srv:
        yield srv


def upload(server: Server, repo_id: str, title: str) -> httpx.Response:
    return server.api.post(f"/api/spaces/{repo_id}/upload", params={"filename": "site.tar.gz"},
                           content=static_tree(title), headers={"Content-Type": "application/gzip"})


def serves(server: Server, label: str, text: str) -> bool | None:
    response = server.space_get(label)
    return True if response.status_code == 200 and text in response.text else None


def assert_unavailable_json(response: httpx.Response, names: str) -> None:
    assert response.status_code == 503, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    assert int(response.headers["Retry-After"]) > 0
    assert names in response.json()["error"].lower()


def test_killed_embedded_redis_is_restarted_and_the_api_answers_503_json_meanwhile(server):
    created = server.api.post("/api/repos/create", json={"type": "space", "name": "page", "sdk": "static"})
    assert created.status_code == 200, created.text
    assert upload(server, "admin/page", "first revision").status_code == 200
    server.wait_stage("admin/page", {"RUNNING"}, timeout=120)
    wait_for("the first revision served", lambda: serves(server, "admin-page", "first revision"), 30)

    os.kill(embedded_redis_pid(server.data_dir), signal.SIGKILL)
    health = wait_for("/health reporting Redis down",
                      lambda: r if (r := server.api.get("/health")).status_code != 200 else None, 5, every=0.05)
    assert_unavailable_json(health, "redis")
    assert health.json()["checks"]["redis"]["ok"] is False
    assert health.json()["checks"]["database"]["ok"] is True

    # A push that cannot be queued is refused as unavailable (its client tries again), not a 500 page.
    assert_unavailable_json(upload(server, "admin/page", "pushed while redis was down"), "redis")
    # The proxy keeps serving the route it knows.
    assert serves(server, "admin-page", "first revision")

    wait_for("/health 200 again", lambda: True if server.api.get("/health").status_code == 200 else None, 60)
    restarted = embedded_redis_pid(server.data_dir)
    assert restarted > 0
    assert serves(server, "admin-page", "first revision")  # routes outlived the restart (append-only file)

    # Once Redis is back, a push builds and serves again.
    pushed = upload(server, "admin/page", "second revision")
    assert pushed.status_code == 200, pushed.text
    wait_for("the second revision served", lambda: serves(server, "admin-page", "second revision"), 120)
    assert "embedded redis-server is back" in server.log.read_text()
