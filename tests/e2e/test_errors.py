"""Errors people understand: the failing build step and the end of its log; the README field of a configuration
error; the last lines a crashing app printed. Each page is open before the error happens: it arrives live."""

from __future__ import annotations

import pytest
from browserkit import APPS, shot
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]


def create(server, name: str) -> None:
    server.api.post("/api/repos/create", json={"type": "space", "name": name, "organization": "alice",
                                               "sdk": "gradio"}).raise_for_status()


def send_files(server, name: str) -> None:
    folder = APPS / name
    files = [("files", (path.name, path.read_bytes())) for path in sorted(folder.iterdir())]
    answer = server.api.post(f"/api/spaces/alice/{name}/upload", files=files)
    if name == "config-error":  # a broken README is refused with the commit (422), the space shows why
        assert answer.status_code == 422, answer.text
    else:
        answer.raise_for_status()


@pytest.mark.parametrize(("app", "stage", "shows"), [
    ("config-error", "CONFIG_ERROR", ["python_version", "README.md field 'python_version'"]),
    ("runtime-error", "RUNTIME_ERROR", ["Last lines the app printed", "loading the model from weights/model.bin",
                                        "FileNotFoundError: weights/model.bin is missing"]),
    ("build-error", "BUILD_ERROR", ["Failing step: installing requirements failed", "End of the build log",
                                    "spacehub-no-such-package-exists"]),
])
def test_an_error_names_its_cause(server, open_context, app, stage, shows):
    create(server, app)
    page = open_context("alice").new_page()
    page.goto(f"/spaces/alice/{app}")
    expect(page.locator("[data-problem=NO_APP_FILE]")).to_be_visible()
    send_files(server, app)

    problem = page.locator(f"[data-problem={stage}]")
    expect(problem).to_be_visible(timeout=240_000)
    for text in shows:
        expect(problem).to_contain_text(text)
    if stage == "CONFIG_ERROR":
        expect(problem.locator(".field-name")).to_have_text("python_version")
    expect(page.locator("iframe[data-app-frame]")).to_have_count(0)
    shot(page, f"error-{app}", full_page=True)
