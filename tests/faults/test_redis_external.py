"""An redis_server redis-server (SPACEHUB_REDIS_URL, over TCP) stopped for 20 s under a real `spacehub serve`: every
API answer meanwhile is 503 JSON with Retry-After where Redis is needed (never a 500), the proxy keeps routing the
spaces it knows, and after Redis returns a push builds and serves."""

from __future__ import annotations

import time

import pytest

from support.faults import serving, static_tree, wait_for
from support.server import Server

pytestmark = pytest.mark.timeout(600)

DOWN_S = 20.0



@pytest.fixture
def server(tmp_path, redis_server):
    with serving(tmp_path / "data", env={"SPACEHUB_REDIS_URL": redis_server.url}) as srv:
        yield srv


def upload(server: Server, title: str) -> tuple[int, str, dict[str, str]]:
    response = server.api.post("/api/spaces/admin/page/upload", params={"filename": "site.tar.gz"},
                               content=static_tree(title), headers={"Content-Type": "application/gzip"})
    return response.status_code, response.text, dict(response.headers)


def test_external_redis_down_for_20s(server, redis_server):
    assert server.api.post("/api/repos/create", json={"type": "space", "name": "page", "sdk": "static"}).is_success
    assert upload(server, "before the outage")[0] == 200
    server.wait_stage("admin/page", {"RUNNING"}, timeout=120)
    wait_for("served", lambda: True if "before the outage" in server.space_get("admin-page").text else None, 30)

    redis_server.stop()
    answers: list[tuple[str, int, str, dict[str, str]]] = []
    served: list[int] = []
    down_until = time.monotonic() + DOWN_S
    while time.monotonic() < down_until:
        health = server.api.get("/health")
        answers.append(("GET /health", health.status_code, health.text, dict(health.headers)))
        answers.append(("POST upload", *upload(server, "pushed while redis was down")))
        listing = server.api.get("/api/spaces")
        answers.append(("GET /api/spaces", listing.status_code, listing.text, dict(listing.headers)))
        served.append(server.space_get("admin-page").status_code)
        time.sleep(0.5)
    redis_server.start()

    assert answers
    for what, status, body, headers in answers:
        assert status < 500 or status == 503, (what, status, body)
        assert headers["content-type"].startswith("application/json"), (what, status, body)
        if status == 503:
            assert int(headers["retry-after"]) > 0, (what, headers)
            assert "redis" in body.lower(), (what, body)
    assert all(status == 503 for what, status, _b, _h in answers if what == "GET /health"), answers[:3]
    assert all(status == 503 for what, status, _b, _h in answers if what == "POST upload"), answers[:3]
    # The proxy kept routing the space it knew, all along.
    assert served and all(status == 200 for status in served), served

    wait_for("/health 200 after Redis returned",
             lambda: True if server.api.get("/health").status_code == 200 else None, 120, every=0.5)
    status, body, _headers = upload(server, "after the outage")
    assert status == 200, body
    wait_for("the new revision served",
             lambda: True if "after the outage" in server.space_get("admin-page").text else None, 120)
