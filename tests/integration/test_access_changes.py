"""Taking access away holds at every proxy process by the time the API call answers: a space made private, a token
revoked, a space deleted. The roles run apart (`spacehub api`, two `spacehub proxy` on ports of their own, a worker,
a supervisor) against one database and Redis, with the proxies' safety nets (token cache, whole-table refresh) set
far longer than the test, so only the acknowledged publish can explain a refusal. Each check follows its API call
at once, with no sleep and no retry."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.faults import Role, static_tree, wait_for
from support.server import ADMIN_TOKEN, free_port, kill_apps

pytestmark = pytest.mark.timeout(600)

TITLE = "a page behind the proxies"




class Platform:
    """The roles apart: one API, two proxies (each on its own public port), a worker and a supervisor."""

    def __init__(self, tmp_path: Path, redis_url: str) -> None:
        self.api_port = free_port()
        self.proxy_ports = [free_port(), free_port()]
        self.env = {**os.environ, "SPACEHUB_DATA_DIR": str(tmp_path / "data"), "SPACEHUB_REDIS_URL": redis_url,
                    "SPACEHUB_PORT": str(self.proxy_ports[0]), "SPACEHUB_API_LISTEN": f"127.0.0.1:{self.api_port}",
                    "SPACEHUB_ADMIN_TOKEN": ADMIN_TOKEN, "SPACEHUB_RECONCILE_INTERVAL_S": "1",
                    "SPACEHUB_FREEZE_AFTER_S": "3600", "PYTHONUNBUFFERED": "1",
                    # The safety nets, far out of reach: only the acknowledged publish can refuse in time.
                    "SPACEHUB_TOKEN_CACHE_S": "3600", "SPACEHUB_ROUTE_REFRESH_S": "3600",
                    **{f"SPACEHUB_RATE_LIMIT_{kind}": "off" for kind in ("INVALID_TOKEN", "WRITES", "BUILDS")}}
        self.logs = tmp_path / "logs"
        self.logs.mkdir()
        self.roles: list[Role] = []

    def start(self) -> None:
        self.roles.append(Role("api", ["api"], self.env, self.logs))
        # The API migrates the schema: the other roles start once it answers (its health says 503 until a worker).
        wait_for("the API answering", lambda: self._answers(f"http://127.0.0.1:{self.api_port}/health"), 120)
        for index, port in enumerate(self.proxy_ports):
            self.roles.append(Role(f"proxy-{index}", ["proxy"], {**self.env, "SPACEHUB_PORT": str(port)}, self.logs))
        self.roles.append(Role("worker", ["worker"], self.env, self.logs))
        self.roles.append(Role("supervisor", ["supervisor"], self.env, self.logs))
        wait_for("the API healthy with a worker", lambda: self._ok(f"http://127.0.0.1:{self.api_port}/health"), 180)
        for port in self.proxy_ports:
            wait_for(f"the proxy on {port}", lambda port=port: self._ok(f"http://127.0.0.1:{port}/health",
                                                                         host=f"localhost:{port}"), 120)

    def stop(self) -> None:
        for role in self.roles:
            role.kill()
        kill_apps(Path(self.env["SPACEHUB_DATA_DIR"]))

    def logs_tail(self) -> str:
        return "\n".join(f"--- {role.name} ---\n{role.log.read_text()[-2000:]}" for role in self.roles)

    @staticmethod
    def _answers(url: str) -> bool | None:
        try:
            httpx.get(url, timeout=10)
        except httpx.HTTPError:
            return None
        return True

    @staticmethod
    def _ok(url: str, host: str | None = None) -> bool | None:
        try:
            response = httpx.get(url, timeout=10, headers={"Host": host} if host else None)
        except httpx.HTTPError:
            return None
        return True if response.status_code == 200 else None

    def api(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=f"http://127.0.0.1:{self.api_port}", timeout=60,
                            headers={"Authorization": f"Bearer {token}"})

    def through_each_proxy(self, label: str, token: str | None = None) -> list[int]:
        """The status of GET / at the space through every proxy process, in turn, at once."""
        statuses = []
        for port in self.proxy_ports:
            headers = {"Host": f"{label}.space.localhost:{port}"}
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                response = client.get("/", headers=headers)
            assert response.status_code != 200 or TITLE in response.text, response.text[:500]
            statuses.append(response.status_code)
        return statuses


@pytest.fixture
def platform(tmp_path, redis_server) -> Iterator[Platform]:
    roles = Platform(tmp_path, redis_server.url)
    try:
        roles.start()
        yield roles
    finally:
        roles.stop()


def test_private_revoked_and_deleted_hold_when_the_call_returns(platform):
    admin = platform.api(ADMIN_TOKEN)
    assert admin.post("/api/repos/create", json={"type": "space", "name": "page", "sdk": "static"}).is_success
    pushed = admin.post("/api/spaces/admin/page/upload", params={"filename": "site.tar.gz"},
                        content=static_tree(TITLE), headers={"Content-Type": "application/gzip"})
    assert pushed.status_code == 200, pushed.text
    wait_for("the space served through both proxies",
             lambda: True if platform.through_each_proxy("admin-page") == [200, 200] else None, 240)

    # A second token, used (and so cached as valid) at both proxies once the space is private.
    created = admin.post("/api/tokens", json={"name": "doomed"})
    assert created.status_code == 200, created.text
    doomed_id, doomed = created.json()["id"], created.json()["token"]

    # Private: anonymous visitors are refused at once, by both proxies (they served them a moment ago).
    assert platform.through_each_proxy("admin-page") == [200, 200]
    made_private = admin.put("/api/spaces/admin/page/settings", json={"private": True})
    assert made_private.status_code == 200 and made_private.json() == {"private": True}, made_private.text
    assert platform.through_each_proxy("admin-page") == [404, 404], platform.logs_tail()
    assert platform.through_each_proxy("admin-page", doomed) == [200, 200]

    # Revoked: the token the proxies had just checked and cached is refused at once.
    revoked = admin.delete(f"/api/tokens/{doomed_id}")
    assert revoked.status_code == 200, revoked.text
    assert platform.through_each_proxy("admin-page", doomed) == [404, 404], platform.logs_tail()
    assert platform.through_each_proxy("admin-page", ADMIN_TOKEN) == [200, 200]  # the other token still opens it

    # Public again, then deleted: gone from both proxies when the delete answers.
    assert admin.put("/api/spaces/admin/page/settings", json={"private": False}).status_code == 200
    assert platform.through_each_proxy("admin-page") == [200, 200]
    deleted = admin.request("DELETE", "/api/repos/delete", json={"type": "space", "name": "page"})
    assert deleted.status_code == 200, deleted.text
    assert platform.through_each_proxy("admin-page") == [404, 404], platform.logs_tail()
    assert platform.through_each_proxy("admin-page", ADMIN_TOKEN) == [404, 404]
