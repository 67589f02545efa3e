"""`GET /metrics` of a real `spacehub serve`, parsed with prometheus_client's own parser: the figures are there,
and they move when traffic moves. The same platform logs in JSON (`SPACEHUB_LOG_FORMAT=json`)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
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


def test_space_traffic_moves_by_status_class_bytes_and_duration(server: Server) -> None:
    label = server.api.get(f"/api/spaces/{SPACE}").json()["subdomain"]
    before = scrape(server)
    pages = [server.space_get(label, "/") for _ in range(5)]
    assert all(page.status_code == 200 for page in pages)
    missing = server.space_get(label, "/no-such-file.txt")
    assert missing.status_code == 404
    # A request with a body takes the proxy's other path (a task that streams it): counted alike.
    body = b"x" * 50_000
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=60) as client:
        posted = client.post("/", content=body, headers={"Host": server.host(label)})
    after = scrape(server)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, space=SPACE, **labels) - value(before, name, space=SPACE, **labels)

    posted_class = f"{posted.status_code // 100}xx"
    assert moved("spacehub_proxy_responses_total", status_class="2xx") == 5 + (posted_class == "2xx")
    assert moved("spacehub_proxy_responses_total", status_class="4xx") == 1 + (posted_class == "4xx")
    assert moved("spacehub_proxy_responses_total", status_class="5xx") == (posted_class == "5xx")
    assert moved("spacehub_proxy_responses_total", status_class="none") == 0
    # The histogram counts the same requests; every one took some time, none beyond +Inf.
    duration = "spacehub_proxy_request_duration_seconds"
    assert moved(f"{duration}_count", status_class="2xx") == moved("spacehub_proxy_responses_total",
                                                                    status_class="2xx")
    assert moved(f"{duration}_bucket", status_class="4xx", le="+Inf") == moved(f"{duration}_count",
                                                                                status_class="4xx")
    assert moved(f"{duration}_sum", status_class="2xx") > 0
    # Bytes as on the wire: at least every body each way (heads come on top).
    sent = sum(len(page.content) for page in pages) + len(missing.content) + len(posted.content)
    assert sent < moved("spacehub_proxy_sent_bytes_total") < sent + 7 * 4096
    assert len(body) < moved("spacehub_proxy_received_bytes_total") < len(body) + 7 * 4096


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
