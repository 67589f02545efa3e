"""A 200 MB upload in flight (its body still arriving, then being unpacked and committed) does not stop another
space from being served: the API's work runs off the event loop that proxies every space."""

from __future__ import annotations

import io
import os
import tarfile
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from support.faults import serving, static_tree, wait_for
from support.server import Server

pytestmark = pytest.mark.timeout(900)

BIG = 200 * 1024 * 1024
SANITY_S = 30.0  # a generous bound on any one probe, not a latency target


@pytest.fixture
def server(tmp_path):
    with serving(tmp_path / "data") as srv:
        yield srv


def big_tar() -> bytes:
    """An uncompressed tar of a static site with a 200 MB file of random bytes (git compresses it slowly)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("README.md", b"---\nsdk: static\napp_file: index.html\n---\n"),
                           ("index.html", b"<h1>big</h1>\n"), ("big.bin", os.urandom(BIG))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Prober(threading.Thread):
    """GETs a space's page one request after another, recording when each answered and how."""

    def __init__(self, server: Server, label: str) -> None:
        super().__init__(daemon=True)
        self.server, self.label = server, label
        self.answers: list[tuple[float, int | str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{self.server.port}", timeout=SANITY_S) as client:
            while not self.stop.is_set():
                try:
                    status: int | str = client.get("/", headers={"Host": self.server.host(self.label)}).status_code
                except httpx.HTTPError as exc:  # no answer within the sanity bound: the loop was blocked
                    status = type(exc).__name__
                self.answers.append((time.monotonic(), status))
                time.sleep(0.02)

    def answered_between(self, start: float, end: float) -> list[int | str]:
        return [status for at, status in list(self.answers) if start <= at <= end]


def test_a_200mb_upload_in_flight_does_not_stop_another_space(server):
    for name in ("page", "big"):
        assert server.api.post("/api/repos/create", json={"type": "space", "name": name, "sdk": "static"}).is_success
    assert server.api.post("/api/spaces/admin/page/upload", params={"filename": "site.tar.gz"},
                           content=static_tree("the other space"),
                           headers={"Content-Type": "application/gzip"}).status_code == 200
    server.wait_stage("admin/page", {"RUNNING"}, timeout=120)
    wait_for("page served", lambda: True if server.space_get("admin-page").status_code == 200 else None, 30)

    body = big_tar()
    prober = Prober(server, "admin-page")
    prober.start()
    marks: dict[str, float] = {}

    def chunks() -> Iterator[bytes]:
        half = len(body) // 2
        for offset in range(0, half, 1 << 20):
            yield body[offset:min(offset + (1 << 20), half)]
        # Hold the upload open, half sent, until the other space has answered several times meanwhile.
        marks["held"] = time.monotonic()
        wait_for("the other space answering while the upload is held",
                 lambda: True if len(prober.answered_between(marks["held"], time.monotonic())) >= 5 else None,
                 SANITY_S)
        for offset in range(half, len(body), 1 << 20):
            yield body[offset:offset + (1 << 20)]
        marks["sent"] = time.monotonic()  # the whole body is out: now it is unpacked and committed

    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=600,
                      headers=dict(server.api.headers)) as client:
        response = client.post("/api/spaces/admin/big/upload", params={"filename": "site.tar"}, content=chunks(),
                               headers={"Content-Type": "application/x-tar", "Content-Length": str(len(body))})
    answered = time.monotonic()
    time.sleep(0.5)
    prober.stop.set()
    prober.join(SANITY_S)

    assert response.status_code == 200, response.text
    assert response.json()["changed"] is True
    assert all(status == 200 for _at, status in prober.answers), [a for a in prober.answers if a[1] != 200]
    assert len(prober.answered_between(marks["held"], marks["sent"])) >= 5
    # While the server unpacked and committed 200 MB (seconds of work), the other space kept answering. The
    # prober asks one request at a time: had the loop been blocked, at most the one request stuck behind it
    # would have been answered in that stretch.
    during_commit = prober.answered_between(marks["sent"], answered)
    print(f"\nanswers while the upload was held: {len(prober.answered_between(marks['held'], marks['sent']))}, "
          f"while it was unpacked and committed ({answered - marks['sent']:.1f} s): {len(during_commit)}")
    assert len(during_commit) >= 3, during_commit
