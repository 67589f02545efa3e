"""An app that mounts Gradio under a sub-path (`gr.mount_gradio_app(app, demo, path="/myapp/gradio")`, served by
uvicorn itself) reaches RUNNING, answers the same through spacehub as directly, and its log holds no probe flood."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from compatkit import Pair, run_both, run_log
from gradio_client import Client

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


def test_the_log_holds_no_probe_flood(server: Server, subpath: Pair) -> None:
    log = run_log(server, subpath.repo_id)
    assert log.count("/theme.css") <= 1, log[-2000:]
