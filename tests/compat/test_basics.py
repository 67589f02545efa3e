"""Four small apps, each run directly and through spacehub and used the same way with gradio_client and in
Chromium: state kept per session, request headers, a streaming chat, a file round trip. Any difference fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pagekit
import pytest
from compatkit import Pair, run_both
from gradio_client import Client, handle_file
from playwright.sync_api import Browser

from support.server import Server

pytestmark = pytest.mark.timeout(900)

APPS = ["state", "headers", "stream", "files"]


@pytest.fixture(scope="module")
def pairs(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Pair]]:
    with run_both(server, APPS, tmp_path_factory.mktemp("direct")) as started:
        yield started


def both(pair: Pair, **kwargs: object) -> list[Client]:
    return [Client(url, verbose=False, **kwargs) for url in (pair.direct, pair.hub)]  # type: ignore[arg-type]


def test_state_is_kept_per_session(pairs: dict[str, Pair]) -> None:
    runs = []
    for client in both(pairs["state"]):
        runs.append([client.predict(2, api_name="/add"), client.predict(3, api_name="/add")])
    assert runs == [[2, 5], [2, 5]]


def test_request_headers_reach_the_app(pairs: dict[str, Pair]) -> None:
    seen = [client.predict("ada", api_name="/echo")
            for client in both(pairs["headers"], headers={"x-compat": "yes"})]
    assert seen == [{"name": "ada", "x-compat": "yes", "has-x-hf-authorization": False}] * 2


def test_streaming_chat_arrives_word_by_word(pairs: dict[str, Pair]) -> None:
    streams = []
    for client in both(pairs["stream"]):
        job = client.submit("hello there", api_name="/chat")
        job.result()
        streams.append(job.outputs())
    assert streams[0] == streams[1]
    assert streams[0][-1] == "You said: hello there" and len(streams[0]) >= 3


def test_file_round_trip(pairs: dict[str, Pair], tmp_path: Path) -> None:
    source = tmp_path / "data.bin"
    source.write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    results = []
    for client in both(pairs["files"]):
        path, size = client.predict(handle_file(str(source)), api_name="/reverse")
        results.append((Path(path).read_bytes(), size))
    assert results[0] == results[1] == (source.read_bytes()[::-1], 1024 * 1024)


# The same, in Chromium: what the page shows.


@pytest.mark.browser
def test_state_in_the_browser(pairs: dict[str, Pair], browser: Browser) -> None:
    pair = pairs["state"]
    assert pagekit.on_both(browser, (pair.direct, pair.hub), pagekit.state) == [{"total": "2"}] * 2


@pytest.mark.browser
def test_request_headers_in_the_browser(pairs: dict[str, Pair], browser: Browser) -> None:
    pair = pairs["headers"]
    shown = pagekit.on_both(browser, (pair.direct, pair.hub), pagekit.headers,
                            extra_http_headers={"x-compat": "yes"})
    assert shown[0] == shown[1]
    assert '"x-compat" : "yes"' in shown[0] and '"has-x-hf-authorization" : false' in shown[0], shown[0]


@pytest.mark.browser
def test_streaming_chat_in_the_browser(pairs: dict[str, Pair], browser: Browser) -> None:
    pair = pairs["stream"]
    shown = pagekit.on_both(browser, (pair.direct, pair.hub), pagekit.stream)
    assert shown == [{"user": ["hello there"], "bot": ["You said: hello there"], "grew": True}] * 2


@pytest.mark.browser
def test_file_upload_and_download_in_the_browser(pairs: dict[str, Pair], browser: Browser, tmp_path: Path) -> None:
    source = tmp_path / "data.bin"
    source.write_bytes(bytes(range(256)) * 1024)  # 256 KiB
    pair = pairs["files"]
    shown = pagekit.on_both(browser, (pair.direct, pair.hub), pagekit.files, source)
    assert shown[0] == shown[1]
    assert shown[0]["bytes"] == str(256 * 1024) and shown[0]["reversed"] and shown[0]["name"] == "reversed-data.bin"
