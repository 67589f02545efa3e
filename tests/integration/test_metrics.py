"""`GET /metrics` of a real `spacehub serve`, parsed with prometheus_client's own parser: the figures are there,
and they move when traffic moves. The same platform logs in JSON (`SPACEHUB_LOG_FORMAT=json`)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.server import EXAMPLES, Server

SPACE = "admin/metered"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("metrics") / "data", log_format="json", gpus="0")
    srv.start()
    try:
        srv.cli("push", str(EXAMPLES / "static"), SPACE)
        srv.wait_stage(SPACE, {"RUNNING"})
        yield srv
    finally:
        srv.stop()
        srv.kill_apps()


def scrape(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = server.api.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_space_requests_are_counted_when_they_happen(server: Server) -> None:
    before = scrape(server)
    label = server.api.get(f"/api/spaces/{SPACE}").json()["subdomain"]
    for _ in range(7):
        assert server.space_get(label, "/").status_code == 200
    after = scrape(server)
    moved = value(after, "spacehub_proxy_requests_total", space=SPACE) - value(before, "spacehub_proxy_requests_total",
                                                                             space=SPACE)
    assert moved == 7
    assert value(after, "spacehub_proxy_open_requests", space=SPACE) == 0
    assert value(after, "spacehub_proxy_routes") >= 1


def test_api_requests_move_by_status_class(server: Server) -> None:
    before = scrape(server)
    for _ in range(3):
        assert server.api.get("/api/spaces/admin/no-such-space").status_code == 404
    after = scrape(server)
    count = "spacehub_api_requests_total"
    assert value(after, count, method="GET", status_class="4xx") - value(before, count, method="GET",
                                                                         status_class="4xx") == 3
    # The first scrape itself is a 2xx GET, counted once it has been answered.
    assert value(after, count, method="GET", status_class="2xx") > value(before, count, method="GET",
                                                                         status_class="2xx")
    latency = "spacehub_api_request_duration_seconds_count"
    assert value(after, latency, method="GET", status_class="4xx") >= 3


def test_platform_figures_come_from_sql_and_the_queues(server: Server) -> None:
    samples = scrape(server)
    assert value(samples, "spacehub_spaces", stage="RUNNING") >= 1
    assert value(samples, "spacehub_builds", outcome="succeeded") >= 1
    assert value(samples, "spacehub_build_duration_seconds_count", outcome="succeeded") >= 1
    assert value(samples, "spacehub_build_duration_seconds_sum", outcome="succeeded") > 0
    assert ("spacehub_queue_jobs", (("queue", "spacehub-builds"), ("state", "queued"))) in samples
    assert value(samples, "spacehub_spaces_frozen") == 0
    assert value(samples, "spacehub_wakes_count", outcome="ready") == 0  # nothing slept yet
    assert value(samples, "spacehub_gpu_slots") == 1  # SPACEHUB_GPUS=0, one space per device
    assert ("spacehub_gpu_slots_held", (("device", "0"),)) in samples


def test_metrics_are_for_admins(server: Server) -> None:
    anonymous = server.api.get("/metrics", headers={"Authorization": ""})
    assert anonymous.status_code == 401
    server.cli("users", "create", "mallory")
    secret = server.cli("token", "create", "--user", "mallory").stdout.strip().splitlines()[-1]
    refused = server.api.get("/metrics", headers={"Authorization": f"Bearer {secret}"})
    assert refused.status_code == 403
    assert "admins" in refused.json()["error"]


def test_log_lines_are_json_objects(server: Server) -> None:
    lines = server.log.read_text().splitlines()
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    assert any(e["logger"] == "alembic.runtime.migration" and "Running upgrade" in e["message"] for e in entries)
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    text_lines = [line for line in lines if re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ", line)]
    assert text_lines == []


def test_the_grafana_dashboard_asks_only_for_metrics_that_exist(server: Server) -> None:
    from support.server import REPO

    dashboard = (REPO / "deploy" / "grafana" / "spacehub.json").read_text()
    asked = set(re.findall(r"spacehub_[a-z_]+", dashboard)) - {"spacehub"}
    exported = {name for name, _labels in scrape(server)}
    assert asked and asked <= exported, asked - exported
