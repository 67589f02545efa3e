"""A browser that opens a sleeping space gets the waiting page, which follows the start and turns into the app."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from browserkit import shot
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

# Takes a few seconds to listen, so the waiting page (after SPACEHUB_WAKE_PAGE_AFTER_S, 1 s) is sure to show.
SLOW_APP = """
import http.server, os, time

time.sleep(3)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"<!doctype html><title>slow app</title><h1>The slow app is up</h1>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def test_the_waiting_page_follows_the_start_and_reloads_into_the_app(server, open_context, tmp_path):
    folder = tmp_path / "slow"
    folder.mkdir()
    (folder / "README.md").write_text("---\ntitle: Slow\nsdk: gradio\napp_file: app.py\n---\n")
    (folder / "app.py").write_text(SLOW_APP)
    server.cli("push", str(folder), "carol/slow-waker")
    assert server.api.post("/api/spaces/carol/slow-waker/sleeptime", json={"seconds": 1}).status_code == 200
    server.wait_stage("carol/slow-waker", {"SLEEPING"}, timeout=60)
    time.sleep(1)  # its app is stopped by then (the stop follows the stage)

    # An API client (no text/html in its Accept) at the same moment is held, as ever, and gets the app's answer.
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(server.space_get, "carol-slow-waker", "/")  # httpx asks for */*
        page = open_context().new_page()
        page.goto(server.space_url("carol-slow-waker"))
        expect(page.locator("[data-spacehub-wake]")).to_be_visible()
        expect(page.locator("h1")).to_contain_text("carol/slow-waker is waking up")
        # The space's state, as the page follows it: asleep when it came, starting once the wake is under way.
        expect(page.locator("[data-spacehub-stage]")).to_have_text(re.compile(r"^(SLEEPING|APP_STARTING|RUNNING)$"))
        shot(page, "wake-waiting-page")
        expect(page.locator("h1")).to_have_text("The slow app is up", timeout=120_000)
        answer = held.result(timeout=300)
    assert answer.status_code == 200 and "The slow app is up" in answer.text, answer.text[:500]
    server.api.post("/api/spaces/carol/slow-waker/sleeptime", json={"seconds": 3600})
