"""A hostile README is refused with CONFIG_ERROR naming the rule, and no listing ever carries a big card.

A real `spacehub serve`; the README goes in through the upload API as any user's would.
"""

from __future__ import annotations

import pytest

from support.server import Server

pytestmark = pytest.mark.timeout(600)

APP = b"import gradio as gr\ngr.Interface(lambda x: x, 'text', 'text').launch()\n"
# Nine levels of nine aliases: 350 bytes of YAML, 9**9 strings once expanded.
BILLION_LAUGHS = ("---\nsdk: gradio\n" + 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(8))
                  + "---\n# laughs\n").encode()
TEN_MB = b"---\nsdk: gradio\ntitle: big\ndescription: " + b"y" * (10 * 1024 * 1024) + b"\n---\n# big\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("frontmatter") / "data")
    srv.start()
    yield srv
    srv.stop()
    srv.kill_apps()


def _upload(server: Server, name: str, readme: bytes) -> None:
    created = server.api.post("/api/repos/create", json={"type": "space", "name": name, "sdk": "gradio"})
    assert created.status_code == 200, created.text
    files = [("files", ("README.md", readme)), ("files", ("app.py", APP))]
    uploaded = server.api.post(f"/api/spaces/admin/{name}/upload", files=files)
    assert uploaded.status_code == 200, uploaded.text


@pytest.mark.parametrize(("name", "readme", "rule"), [
    ("laughs", BILLION_LAUGHS, "YAML aliases (*a) are not allowed"),
    ("tenmb", TEN_MB, "front matter is larger than 64 KB"),
])
def test_hostile_readme_is_a_config_error_naming_the_rule(server, name, readme, rule):
    _upload(server, name, readme)
    runtime = server.wait_stage(f"admin/{name}", {"CONFIG_ERROR", "BUILD_ERROR", "RUNNING", "APP_STARTING"})
    assert runtime["stage"] == "CONFIG_ERROR"
    assert rule in str(runtime["errorMessage"])
    info = server.api.get(f"/api/spaces/admin/{name}").json()
    assert info["cardData"] == {}


def test_listings_and_pages_stay_small(server):
    for name, readme in (("laughs", BILLION_LAUGHS), ("tenmb", TEN_MB)):
        if server.api.get(f"/api/spaces/admin/{name}").status_code == 404:
            _upload(server, name, readme)
        server.wait_stage(f"admin/{name}", {"CONFIG_ERROR"})
    listing = server.api.get("/api/spaces", params={"full": "true"})
    assert listing.status_code == 200
    assert {"admin/laughs", "admin/tenmb"} <= {row["id"] for row in listing.json()}
    assert len(listing.content) < 16 * 1024
    browser = {"Accept": "text/html"}
    for path in ("/spaces", "/spaces/admin/laughs", "/spaces/admin/tenmb"):
        page = server.api.get(path, headers=browser)
        assert page.status_code == 200, path
        assert len(page.content) < 256 * 1024, path


def test_validate_yaml_names_the_rule(server):
    answer = server.api.post("/api/validate-yaml", json={"repoType": "space", "content": BILLION_LAUGHS.decode()})
    assert answer.status_code == 400
    assert "YAML aliases" in answer.json()["errors"][0]["message"]
