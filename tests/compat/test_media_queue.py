"""Images, audio, a queue's concurrency limit, progress updates and cached examples: each app run directly and
through spacehub (started in parallel) and used the same way with gradio_client and in Chromium. Any difference
fails."""

from __future__ import annotations

import time
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pagekit
import pytest
from compatkit import Pair, run_both, run_log
from gradio_client import Client, handle_file
from PIL import Image
from playwright.sync_api import Browser

from support.server import Server

pytestmark = pytest.mark.timeout(900)

APPS = ["images", "audio", "queue", "progress", "examples"]


@pytest.fixture(scope="module")
def pairs(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Pair]]:
    with run_both(server, APPS, tmp_path_factory.mktemp("direct")) as started:
        yield started


def both(pair: Pair) -> list[Client]:
    return [Client(url, verbose=False) for url in (pair.direct, pair.hub)]


def test_image_comes_back_mirrored(pairs: dict[str, Pair], tmp_path: Path) -> None:
    pixels = np.arange(40 * 30 * 3, dtype=np.uint8).reshape(30, 40, 3)
    Image.fromarray(pixels).save(tmp_path / "in.png")
    outputs = [np.asarray(Image.open(client.predict(handle_file(str(tmp_path / "in.png")), api_name="/mirror"))
                          .convert("RGB")) for client in both(pairs["images"])]
    assert np.array_equal(outputs[0], outputs[1])
    assert np.array_equal(outputs[0], pixels[:, ::-1])


def test_audio_comes_back_halved(pairs: dict[str, Pair], tmp_path: Path) -> None:
    samples = (np.sin(np.linspace(0, 200, 8000)) * 20000).astype(np.int16)
    with wave.open(str(tmp_path / "in.wav"), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(8000)
        out.writeframes(samples.tobytes())
    got = []
    for client in both(pairs["audio"]):
        with wave.open(client.predict(handle_file(str(tmp_path / "in.wav")), api_name="/halve"), "rb") as back:
            got.append((back.getframerate(), np.frombuffer(back.readframes(back.getnframes()), dtype=np.int16)))
    assert got[0][0] == got[1][0] == 8000
    assert np.array_equal(got[0][1], got[1][1]) and np.array_equal(got[0][1], samples // 2)


def test_concurrency_limit_of_one_holds(pairs: dict[str, Pair]) -> None:
    for client in both(pairs["queue"]):
        jobs = [client.submit(f"job-{index}", api_name="/work") for index in range(4)]
        results = [job.result() for job in jobs]
        assert sorted(result["tag"] for result in results) == [f"job-{index}" for index in range(4)]
        assert max(result["most_at_once"] for result in results) == 1


def test_progress_updates_arrive(pairs: dict[str, Pair]) -> None:
    seen = []
    for client in both(pairs["progress"]):
        job = client.submit(40, api_name="/count")
        descriptions: set[str] = set()
        while not job.done():
            for unit in job.status().progress_data or []:
                descriptions.add(str(unit.desc))
            time.sleep(0.02)
        seen.append((job.result(), sorted(descriptions)))
    assert seen[0] == seen[1] == ("counted 40", ["Counting"])


def test_cached_examples_are_served(server: Server, pairs: dict[str, Pair], tmp_path_factory) -> None:
    answers = [[client.predict(3, api_name="/square"), client.predict(12, api_name="/square")]
               for client in both(pairs["examples"])]
    assert answers == [[9, 144], [9, 144]]
    # Both cached the examples at start-up, as Gradio says in its log. The direct app runs once, from a fresh
    # copy; the space may have slept while the module's other tests ran and woken for this one, and a woken app
    # finds the cache its first start made in its folder (Gradio then says it uses it).
    direct_log = next(Path(tmp_path_factory.getbasetemp()).glob("direct*/examples.direct.log")).read_text()
    assert "Caching examples" in direct_log
    hub_log = run_log(server, pairs["examples"].repo_id)
    assert "Caching examples" in hub_log or "Using cache from" in hub_log, hub_log


# The same, in Chromium: what the page shows.


@pytest.mark.browser
def test_image_in_the_browser(pairs: dict[str, Pair], browser: Browser, tmp_path: Path) -> None:
    pixels = np.arange(40 * 30 * 3, dtype=np.uint8).reshape(30, 40, 3)
    Image.fromarray(pixels).save(tmp_path / "in.png")
    pair = pairs["images"]
    shown = pagekit.on_both(browser, (pair.direct, pair.hub), pagekit.images, tmp_path / "in.png")
    assert np.array_equal(shown[0], shown[1]) and np.array_equal(shown[0], pixels[:, ::-1])


@pytest.mark.browser
def test_audio_in_the_browser(pairs: dict[str, Pair], browser: Browser, tmp_path: Path) -> None:
    samples = (np.sin(np.linspace(0, 200, 8000)) * 20000).astype(np.int16)
    with wave.open(str(tmp_path / "in.wav"), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(8000)
        out.writeframes(samples.tobytes())
    pair = pairs["audio"]
    shown = pagekit.on_both(browser, (pair.direct, pair.hub), pagekit.audio, tmp_path / "in.wav")
    assert shown[0][0] == shown[1][0] == 8000
    assert np.array_equal(shown[0][1], shown[1][1]) and np.array_equal(shown[0][1], samples // 2)


@pytest.mark.browser
def test_concurrency_limit_in_the_browser(pairs: dict[str, Pair], browser: Browser) -> None:
    # Two visitors (two pages, each its own session) submit at once: with a limit of one, they run in turn.
    pair = pairs["queue"]
    shown = []
    for url in (pair.direct, pair.hub):
        with pagekit.app_page(browser, url) as one, pagekit.app_page(browser, url) as two:
            shown.append(pagekit.queue([one, two]))
    assert shown[0] == shown[1]
    assert shown[0]["all_one"], shown[0]


@pytest.mark.browser
def test_progress_in_the_browser(pairs: dict[str, Pair], browser: Browser) -> None:
    pair = pairs["progress"]
    shown = pagekit.on_both(browser, (pair.direct, pair.hub), pagekit.progress)
    assert shown == [{"saw": "Counting", "output": "counted 40"}] * 2


@pytest.mark.browser
def test_cached_examples_in_the_browser(pairs: dict[str, Pair], browser: Browser) -> None:
    pair = pairs["examples"]
    assert pagekit.on_both(browser, (pair.direct, pair.hub), pagekit.examples) == [["9", "144"]] * 2
