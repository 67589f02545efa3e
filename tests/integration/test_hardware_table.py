"""One hardware table for every entry point: a flavor that only the deployment's SPACEHUB_HARDWARE_TABLE defines
is offered by the web UI's menus, accepted by the Hub API (create and request hardware) and placed by the runner
with its own sizes; a name in no table is refused with a 4xx naming the rule.

The app runs in-process (TestClient) on a real database and a real redis-server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from spacehub import accounts, hardware
from spacehub.app import create_app
from spacehub.context import Platform
from spacehub.settings import Settings
from spacehub.store.models import Space
from spacehub_runner.gpus import gpus_needed
from support.faults import RedisServer

TOKEN = "sh_hardware_table_test_token_0123456789"
PASSWORD = "a-long-enough-password"
CUSTOM = "lab-gpu-pair"  # in no table but this deployment's file
TABLE = f"{CUSTOM}: {{cpus: 3, memory_gb: 5, gpus: 2, disk_gb: 7}}\n"


@pytest.fixture
def platform(tmp_path: Path, redis_server: RedisServer) -> Platform:
    table = tmp_path / "hardware.yaml"
    table.write_text(TABLE)
    settings = Settings(data_dir=tmp_path / "data", admin_token=TOKEN, redis_url=redis_server.url,
                        hardware_table=table, gpus="0,1")
    return Platform.open(settings)


@pytest.fixture
def client(platform: Platform) -> Iterator[TestClient]:
    with TestClient(create_app(platform), raise_server_exceptions=False,
                    headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


def _hardware_of(platform: Platform, repo_id: str) -> str:
    with platform.db.session() as session:
        space = session.query(Space).filter(Space.key == repo_id.lower()).one()
        return str(space.hardware)


def test_the_api_creates_a_space_on_a_flavor_from_the_deployments_table(platform: Platform,
                                                                         client: TestClient) -> None:
    created = client.post("/api/repos/create", json={"type": "space", "name": "on-lab", "sdk": "static",
                                                     "hardware": CUSTOM})
    assert created.status_code == 200, created.text
    assert _hardware_of(platform, "admin/on-lab") == CUSTOM
    assert CUSTOM in {item["name"] for item in client.get("/api/spaces/hardware").json()}


def test_the_api_moves_a_space_to_a_flavor_from_the_deployments_table(platform: Platform,
                                                                       client: TestClient) -> None:
    assert client.post("/api/repos/create", json={"type": "space", "name": "moves",
                                                  "sdk": "static"}).status_code == 200
    moved = client.post("/api/spaces/admin/moves/hardware", json={"flavor": CUSTOM})
    assert moved.status_code == 200, moved.text
    assert _hardware_of(platform, "admin/moves") == CUSTOM

    refused = client.post("/api/spaces/admin/moves/hardware", json={"flavor": "no-such-flavor"})
    assert refused.status_code == 400, refused.text
    assert "hardware must be one of" in refused.json()["error"] and CUSTOM in refused.json()["error"]
    assert _hardware_of(platform, "admin/moves") == CUSTOM


def test_the_web_menus_offer_the_flavor(platform: Platform) -> None:
    with platform.db.session() as session:
        accounts.create_user(session, "carol", password=PASSWORD)
    with TestClient(create_app(platform), raise_server_exceptions=False) as browser:
        form = browser.get("/login", headers={"Accept": "text/html"}).text
        csrf = re.search(r'name="csrf_token" value="([0-9a-f]+)"', form)
        assert csrf is not None, form[:300]
        signed_in = browser.post("/login", follow_redirects=False,
                                 data={"username": "carol", "password": PASSWORD, "next": "/",
                                       "csrf_token": csrf.group(1)})
        assert signed_in.status_code == 303, signed_in.text[:300]
        page = browser.get("/new-space", headers={"Accept": "text/html"})
    assert page.status_code == 200, page.text[:300]
    # Offered, not greyed out: two GPUs are configured and the flavor needs two.
    assert f'<option value="{CUSTOM}">{CUSTOM}</option>' in page.text
    assert dict(hardware.menu(platform.settings))[CUSTOM] is None


def test_the_runner_places_the_flavor_with_its_own_sizes(platform: Platform) -> None:
    assert gpus_needed(platform.settings, CUSTOM) == 2
    size = hardware.flavor(platform.settings, CUSTOM)
    assert (size.cpus, size.memory_gb, size.gpus, size.disk_gb) == (3.0, 5.0, 2, 7.0)
    # A name in no table is placed as the default flavor, never refused half-way through a start.
    assert gpus_needed(platform.settings, "no-such-flavor") == 0
