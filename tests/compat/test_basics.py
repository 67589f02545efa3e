"""Four small apps, each run directly and through spacehub and called the same way with gradio_client: state
kept per session, request headers, a streaming chat, a file round trip. Any difference fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from compatkit import Pair, run_both
from gradio_client import Client, handle_file

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
