"""The compat apps in Chromium, used as a person uses them: each function here drives one app's page and returns
what the page showed (output values, the bytes of what it offered to download or displayed, chat messages, the
progress seen), so that a test compares the app run directly with the same app through spacehub.

Every page is opened in a browser context of its own that records each request to a host other than the page's
own and each console error, failed response or uncaught page error (e2e.browserkit.Offsite): any of them fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from e2e.browserkit import Offsite
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Page, expect

GRADIO_FOOTER = "[aria-label='Gradio footer navigation']"
TIMEOUT_MS = 60_000  # what a step may take on a busy two-core machine (Gradio loads its components lazily)


class Watch(Offsite):
    """Offsite, but for an app with nothing at its root (Gradio mounted under a sub-path): the browser's own
    request for /favicon.ico finds the app's 404 there, directly as through spacehub; that one is not a fault."""

    def __init__(self, context: BrowserContext, host: str, *, root_is_empty: bool) -> None:
        self.root_is_empty = root_is_empty
        super().__init__(context, host, host)  # its own host only (nothing under it is another's)

    def _page(self, page: Page) -> None:
        if not self.root_is_empty:
            super()._page(page)
            return
        page.on("console", lambda message: self.errors.append(f"{page.url}: {message.text}")
                if message.type == "error" and urlsplit(message.location.get("url", "")).path != "/favicon.ico"
                else None)
        page.on("response", lambda response: self.errors.append(f"{response.status} {response.url}")
                if response.status >= 400 and urlsplit(response.url).path != "/favicon.ico" else None)
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: {error}"))


@contextlib.contextmanager
def app_page(browser: Browser, url: str, *, root_is_empty: bool = False, **context_options: Any) -> Iterator[Page]:
    """The app's page, loaded; on leaving, nothing may have left the page's host and nothing may have failed."""
    context = browser.new_context(accept_downloads=True, **context_options)
    context.set_default_timeout(TIMEOUT_MS)
    watch = Watch(context, urlsplit(url).hostname or "", root_is_empty=root_is_empty)
    try:
        page = context.new_page()
        page.goto(url)
        expect(page.locator(GRADIO_FOOTER)).to_be_visible(timeout=120_000)
        yield page
        page.wait_for_timeout(300)  # a late console error or request of the last step still counts
    finally:
        context.close()
    assert watch.requests == [], f"{url}: requests to other hosts: {watch.requests}"
    assert watch.errors == [], f"{url}: errors: {watch.errors}"


def submit(page: Page, name: str = "Submit") -> None:
    page.get_by_role("button", name=name, exact=True).click()


def fetched(page: Page, url: str) -> bytes:
    """A URL the page shows (an <img>/<audio> source), fetched with the page's own cookies."""
    response = page.context.request.get(url)
    assert response.ok, f"{url}: {response.status}"
    return response.body()


# One function per app: (page, ...) -> what the page showed.


def state(page: Page) -> dict[str, str]:
    total = page.get_by_label("Total")
    for expected in ("1", "2"):
        submit(page, "Add")
        expect(total).to_have_value(expected)
    return {"total": total.input_value()}


def headers(page: Page) -> str:
    page.get_by_label("Name").fill("ada")
    submit(page)
    seen = page.get_by_test_id("json")
    expect(seen).to_contain_text("ada")
    return re.sub(r"\s+", " ", seen.inner_text())


def stream(page: Page) -> dict[str, object]:
    # Every text the reply showed, as it grew (a MutationObserver on the conversation, once it is drawn).
    expect(page.locator("[role=log]")).to_be_attached()
    page.evaluate("""() => {
        window.__replies = [];
        const log = document.querySelector("[role=log]");
        new MutationObserver(() => {
            const bots = log.querySelectorAll("[data-testid=bot]");
            const text = bots.length ? bots[bots.length - 1].innerText.trim() : "";
            if (text && window.__replies[window.__replies.length - 1] !== text) window.__replies.push(text);
        }).observe(log, {childList: true, characterData: true, subtree: true});
    }""")
    box = page.get_by_test_id("textbox")
    box.fill("hello there")
    box.press("Enter")
    expect(page.get_by_test_id("bot").last).to_have_text("You said: hello there")
    replies: list[str] = page.evaluate("window.__replies")
    grew = len(replies) >= 2 and all(b.startswith(a) for a, b in zip(replies, replies[1:], strict=False))
    return {"user": page.get_by_test_id("user").all_inner_texts(), "bot": page.get_by_test_id("bot").all_inner_texts(),
            "grew": grew}


def files(page: Page, source: Path) -> dict[str, object]:
    page.locator("input[type=file]").first.set_input_files(str(source))
    # The upload finished: the input's row links to the stored file. (Its name is drawn as stem and extension in
    # two spans, which a text match sometimes misses.)
    expect(page.locator(f"a[href$='/{source.name}']").first).to_be_visible()
    submit(page)
    expect(page.get_by_label("Bytes")).to_have_value(str(source.stat().st_size))
    name, data = downloaded(page, f"a[data-testid=download-link][download='reversed-{source.name}']")
    return {"bytes": page.get_by_label("Bytes").input_value(), "name": name,
            "sha256": hashlib.sha256(data).hexdigest(), "reversed": data == source.read_bytes()[::-1]}


def downloaded(page: Page, link: str) -> tuple[str, bytes]:
    """Click a download link as a visitor does: the file's suggested name and its bytes."""
    with page.expect_download() as download:
        page.locator(link).click()
    return download.value.suggested_filename, Path(download.value.path()).read_bytes()


def images(page: Page, source: Path) -> np.ndarray:
    page.locator("input[type=file]").first.set_input_files(str(source))
    expect(page.locator("img").first).to_be_visible()  # the upload's preview
    submit(page)
    shown = page.get_by_test_id("block-label").filter(has_text="output").locator("xpath=..").locator("img")
    expect(shown).to_have_attribute("src", re.compile("/gradio_api/file="))
    src = shown.get_attribute("src")
    assert src is not None
    return np.asarray(Image.open(io.BytesIO(fetched(page, src))).convert("RGB"))


def audio(page: Page, source: Path) -> tuple[int, np.ndarray]:
    page.locator("input[type=file]").first.set_input_files(str(source))
    submit(page)
    expect(page.get_by_test_id("waveform-output")).to_be_visible()  # the player drew the answer
    name, data = downloaded(page, "a[data-testid=download-link][download$='.wav']")
    assert name.endswith(".wav"), name
    with wave.open(io.BytesIO(data), "rb") as back:
        return back.getframerate(), np.frombuffer(back.readframes(back.getnframes()), dtype=np.int16)


def queue(pages: list[Page]) -> dict[str, object]:
    """Several visitors submit at once; the app reports how many of its calls ever ran together."""
    for index, page in enumerate(pages):
        page.get_by_label("Tag").fill(f"tab-{index}")
    for page in pages:
        submit(page)
    results = []
    for index, page in enumerate(pages):
        shown = page.get_by_test_id("json")
        expect(shown).to_contain_text(f"tab-{index}")
        expect(shown).to_contain_text("most_at_once")
        results.append(re.sub(r"\s+", " ", shown.inner_text()))
    return {"results": results, "all_one": all(re.search(r"most_at_once\W+1\b", text) for text in results)}


def progress(page: Page) -> dict[str, object]:
    page.get_by_label("How many").fill("40")
    submit(page)
    tracker = page.get_by_test_id("status-tracker").filter(has_text="Counting")
    expect(tracker.first).to_be_visible()
    shown = page.get_by_label("output")
    expect(shown).to_have_value("counted 40")
    expect(tracker).to_have_count(0)  # the progress is gone once the result is there
    return {"saw": "Counting", "output": shown.input_value()}


def examples(page: Page) -> list[str]:
    answers = []
    for example, expected in (("3", "9"), ("12", "144")):
        page.get_by_role("button", name=example, exact=True).click()
        expect(page.get_by_label("x squared")).to_have_value(expected)
        answers.append(page.get_by_label("x squared").input_value())
    return answers


def subpath(page: Page) -> str:
    page.get_by_label("Text").fill("hi there")
    submit(page)
    shouted = page.get_by_label("Shouted")
    expect(shouted).to_have_value("HI THERE!")
    return shouted.input_value()


def on_both(browser: Browser, urls: tuple[str, str], act: Any, *args: Any, **context_options: Any) -> list[Any]:
    """`act(page, *args)` on the app's page directly, then through spacehub: what each showed."""
    shown = []
    for url in urls:
        with app_page(browser, url, **context_options) as page:
            shown.append(act(page, *args))
    return shown
