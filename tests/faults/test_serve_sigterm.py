"""Stopping on purpose: SIGTERM during a streaming Gradio call lets the call finish (all 16 steps and the
completion event), then `serve` exits, leaving its apps running for re-adoption and saying so; `spacehub stop`
then stops every app (a frozen one too) and every fork-server of the data dir."""

from __future__ import annotations

import json
import os
import signal

import httpx
import pytest

from support.faults import serving, wait_for
from support.server import EXAMPLES, app_pids, fork_server_pids

pytestmark = pytest.mark.timeout(900)

STEPS = 16


@pytest.fixture
def server(tmp_path):
    with serving(tmp_path / "data") as srv:
        yield srv


def test_sigterm_lets_a_streaming_call_finish_then_stop_stops_everything(server):
    server.cli("push", str(EXAMPLES / "streaming"), "admin/streaming")
    host = {"Host": server.host("admin-streaming")}
    base = f"http://127.0.0.1:{server.port}"
    start = httpx.post(f"{base}/gradio_api/call/count", json={"data": [STEPS, 0.5]}, headers=host, timeout=60)
    assert start.status_code == 200, start.text
    event_id = start.json()["event_id"]

    steps: list[str] = []
    events: list[str] = []
    with httpx.stream("GET", f"{base}/gradio_api/call/count/{event_id}", headers=host, timeout=60) as response:
        for line in response.iter_lines():
            if line.startswith("event: "):
                events.append(line.removeprefix("event: "))
            elif line.startswith("data: ") and events and events[-1] in ("generating", "complete"):
                steps.append(json.loads(line.removeprefix("data: "))[0])
                if len(steps) == 4:
                    assert server.process is not None
                    server.process.send_signal(signal.SIGTERM)  # mid-stream
    assert len(steps) >= STEPS, steps
    assert steps[-1] == " ".join(f"step {n}" for n in range(1, STEPS + 1))
    assert events[-1] == "complete", events

    assert server.process is not None
    assert server.process.wait(120) == 0
    log = server.log.read_text()
    assert "leaving 1 app(s) running on purpose" in log and "admin/streaming" in log
    apps = app_pids(server.data_dir)
    assert apps, "serve should leave its app running for the next start to re-adopt"
    assert fork_server_pids(server.data_dir), "the fork-server outlives serve too"

    # A frozen app (the runtime's idle freeze is SIGSTOP of the app's process group) is stopped all the same.
    os.killpg(os.getpgid(apps[0]), signal.SIGSTOP)
    stopped = server.cli("stop")
    assert "app admin/streaming: stopped" in stopped.stdout
    assert "serve: not running" in stopped.stdout
    wait_for("no app or fork-server process left",
             lambda: True if not app_pids(server.data_dir) + fork_server_pids(server.data_dir) else None, 30)
