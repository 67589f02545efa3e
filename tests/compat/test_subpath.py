"""An app that mounts Gradio under a sub-path (`gr.mount_gradio_app(app, demo, path="/myapp/gradio")`, served by
uvicorn itself) reaches RUNNING, answers the same through spacehub as directly (gradio_client, Chromium), and its
log holds no probe flood."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pagekit
import pytest
from compatkit import Pair, run_both, run_log
from gradio_client import Client
from playwright.sync_api import Browser

from support.server import Server

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def subpath(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    with run_both(server, ["subpath"], tmp_path_factory.mktemp("direct")) as pairs:
        yield pairs["subpath"]


def test_reaches_running_and_serves_its_routes(server: Server, subpath: Pair) -> None:
    for base in (subpath.direct, subpath.hub):
        assert httpx.get(f"{base}/myapp/health").json() == {"status": "ok"}
        page = httpx.get(f"{base}/myapp/gradio/")
        assert page.status_code == 200 and "gradio" in page.text.lower()
        assert httpx.get(f"{base}/").status_code == 404  # nothing at the root, as directly


def test_gradio_client_gets_the_same_answer(subpath: Pair) -> None:
    answers = [Client(f"{base}/myapp/gradio/", verbose=False).predict("hi there", api_name="/shout")
               for base in (subpath.direct, subpath.hub)]
    assert answers == ["HI THERE!", "HI THERE!"]


@pytest.mark.browser
def test_the_page_under_the_sub_path_works_in_the_browser(subpath: Pair, browser: Browser) -> None:
    urls = (f"{subpath.direct}/myapp/gradio/", f"{subpath.hub}/myapp/gradio/")
    assert pagekit.on_both(browser, urls, pagekit.subpath, root_is_empty=True) == ["HI THERE!"] * 2


def test_the_log_holds_no_probe_flood(server: Server, subpath: Pair) -> None:
    log = run_log(server, subpath.repo_id)
    # (Readiness probes ask for the root's theme.css; the page under the sub-path asks for its own, rightly.)
    assert log.count('"GET /theme.css ') <= 1, log[-2000:]
