"""A redeploy under Gradio's two-request calls: every call completes, each on one revision.

Gradio calls take two requests: `POST /gradio_api/queue/join` then `GET /gradio_api/queue/data` (gradio_client's
`predict`), or `POST /gradio_api/call/<fn>` then `GET /gradio_api/call/<fn>/<event_id>` (the REST pair, as curl
with a cookie jar makes it). Both requests must meet the same app. Loops of both kinds run while a second revision
is pushed and rolled out; a client that began on the first revision stays on it while it drains (its answers say
which revision made them), and new clients get the second.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gradio_client import Client

from support.faults import wait_for
from support.server import Server

pytestmark = pytest.mark.timeout(900)

README = "---\ntitle: Sticky\nsdk: gradio\napp_file: app.py\n---\n"
APP = """import time

import gradio as gr

REVISION = "{revision}"


def which(text):
    time.sleep(0.2)
    return f"{{REVISION}}:{{text}}"


def hold(seconds):
    time.sleep(float(seconds))
    return REVISION


with gr.Blocks() as demo:
    box = gr.Textbox()
    out = gr.Textbox()
    gr.Button("which").click(which, box, out, api_name="which")
    gr.Button("hold").click(hold, box, out, api_name="hold")

demo.queue(default_concurrency_limit=None)

if __name__ == "__main__":
    demo.launch()
"""
REPO = "admin/sticky"
LABEL = "admin-sticky"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # The old revision drains for as long as the test looks at it (a long call keeps it busy).
    srv = Server(tmp_path_factory.mktemp("sticky") / "data", drain_timeout_s="600")
    srv.start()
    yield srv
    srv.stop()
    srv.kill_apps()


def push(server: Server, folder: Path, revision: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / "README.md").write_text(README)
    (folder / "app.py").write_text(APP.format(revision=revision))
    server.cli("push", str(folder), REPO)


def rest_call(base: str, text: str) -> str:
    """The REST pair with a cookie jar (`curl -c/-b`): POST the call, then GET its result stream."""
    with httpx.Client(base_url=base, timeout=120) as client:
        started = client.post("/gradio_api/call/which", json={"data": [text]})
        started.raise_for_status()
        event_id = started.json()["event_id"]
        with client.stream("GET", f"/gradio_api/call/which/{event_id}") as stream:
            stream.raise_for_status()
            event = ""
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event == "complete":
                    return str(json.loads(line.split(":", 1)[1])[0])
                elif event == "error":
                    raise AssertionError(f"the call failed: {line}")
    raise AssertionError("the result stream ended without an answer")


class Loop(threading.Thread):
    """Calls in a loop until stopped; records every answer and every failure."""

    def __init__(self, call, name: str) -> None:  # type: ignore[no-untyped-def]
        super().__init__(daemon=True, name=name)
        self.call = call
        self.answers: list[str] = []
        self.failures: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        count = 0
        while not self.stop.is_set():
            count += 1
            try:
                answer = self.call(f"{self.name}-{count}")
                if not answer.endswith(f":{self.name}-{count}"):
                    self.failures.append(f"call {count}: wrong answer {answer!r}")
                self.answers.append(answer)
            except Exception as exc:  # noqa: BLE001 - every failure is what this test counts
                self.failures.append(f"call {count}: {type(exc).__name__}: {exc}")


def test_two_step_calls_finish_on_their_revision_through_a_redeploy(server, tmp_path):
    base = server.space_url(LABEL)
    push(server, tmp_path / "app", "one")
    server.wait_stage(REPO, {"RUNNING"}, timeout=300)

    # A long call keeps the first revision busy, so it drains (rather than stops) while the test looks at it.
    holder = Client(base, verbose=False)
    held = holder.submit("600", api_name="/hold")
    # A client that began on the first revision: gradio_client keeps the cookies of its first answer.
    pinned = Client(base, verbose=False)
    assert pinned.predict("before", api_name="/which") == "one:before"

    def fresh_client_call(text: str) -> str:
        return str(Client(base, verbose=False).predict(text, api_name="/which"))

    loops = [Loop(fresh_client_call, "client"), Loop(lambda text: rest_call(base, text), "rest-a"),
             Loop(lambda text: rest_call(base, text), "rest-b"),
             Loop(lambda text: str(pinned.predict(text, api_name="/which")), "pinned")]
    for loop in loops:
        loop.start()
    try:
        wait_for("a few calls on the first revision", lambda: True if all(
            len(loop.answers) >= 2 for loop in loops) else None, 120)
        push(server, tmp_path / "app", "two")
        # The second revision serves new clients: a fresh REST pair (a new cookie jar) gets its answer.
        wait_for("the second revision serving new clients",
                 lambda: True if rest_call(base, "probe").startswith("two:") else None, 300)
        marks = {loop.name: len(loop.answers) for loop in loops}
        wait_for("more calls after the switch", lambda: True if all(
            len(loop.answers) >= marks[loop.name] + 3 for loop in loops) else None, 120)
    finally:
        for loop in loops:
            loop.stop.set()
        for loop in loops:
            loop.join(120)
    held.cancel()

    for loop in loops:
        assert loop.failures == [], (loop.name, loop.failures[:5], server.log.read_text()[-3000:])
    answered = {answer.split(":")[0] for loop in loops for answer in loop.answers}
    assert answered == {"one", "two"}, answered  # the loops ran across the switch
    # The client that began on the first revision stayed on it while it drained.
    assert {a.split(":")[0] for a in loops[3].answers} == {"one"}
