"""The Kubernetes builder's cluster adapter (`ClientCluster`: the official `kubernetes` client) against a stub of
the API server's HTTP endpoints on loopback, so the requests the real client library sends are checked: the
paths, the Job's pod found by its `job-name` label, the Job deleted with its pods (Background propagation), a
missing Job or Secret not an error, and the pod's log streamed line by line as it is written."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from spacehub.settings import Settings
from spacehub_runner.builders.kubernetes import ClientCluster

NS = "spacehub-builds"


class _Api(BaseHTTPRequestHandler):
    seen: list[tuple[str, str, dict[str, list[str]], Any]] = []
    streamed = threading.Event()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _record(self) -> tuple[str, dict[str, list[str]]]:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        query = parse_qs(parts.query)
        self.seen.append((self.command, parts.path, query, body))
        return parts.path, query

    def _json(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        _, _ = self._record()
        self._json(201, {})

    def do_DELETE(self) -> None:
        path, _ = self._record()
        if path.endswith("/gone"):
            self._json(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
        else:
            self._json(200, {"kind": "Status", "status": "Success"})

    def do_GET(self) -> None:
        path, query = self._record()
        if path == f"/apis/batch/v1/namespaces/{NS}/jobs/build-1":
            self._json(200, {"metadata": {"name": "build-1"}, "status": {"active": 1}})
        elif path.startswith(f"/apis/batch/v1/namespaces/{NS}/jobs/"):
            self._json(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
        elif path == f"/api/v1/namespaces/{NS}/pods":
            items = [{"metadata": {"name": "build-1-x"}}] if query.get("labelSelector") == ["job-name=build-1"] else []
            self._json(200, {"items": items})
        elif path == f"/api/v1/namespaces/{NS}/pods/build-1-x/log":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (b"#1 load defin", b"ition\n#2 RUN pip", b" install\n", b"#3 done\n"):
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                self.wfile.flush()
                time.sleep(0.05)
            self.wfile.write(b"0\r\n\r\n")
        else:
            self._json(404, {"kind": "Status", "code": 404})


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ClientCluster]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    _Api.seen = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "stub",
        "clusters": [{"name": "stub", "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"}}],
        "users": [{"name": "stub", "user": {"token": "stub-token"}}],
        "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub"}}],
    }))
    try:
        yield ClientCluster(Settings(data_dir=tmp_path / "data", kube_config=kubeconfig))
    finally:
        server.shutdown()
        server.server_close()


def test_jobs_and_secrets_are_created_and_deleted_where_they_belong(cluster: ClientCluster) -> None:
    cluster.create_secret(NS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "build-1-inputs"}})
    cluster.create_job(NS, {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "build-1"}})
    cluster.delete_job(NS, "build-1")
    cluster.delete_job(NS, "gone")  # already gone: not an error (the TTL may have been first)
    cluster.delete_secret(NS, "gone")
    calls = [(method, path) for method, path, _, _ in _Api.seen]
    assert calls == [
        ("POST", f"/api/v1/namespaces/{NS}/secrets"),
        ("POST", f"/apis/batch/v1/namespaces/{NS}/jobs"),
        ("DELETE", f"/apis/batch/v1/namespaces/{NS}/jobs/build-1"),
        ("DELETE", f"/apis/batch/v1/namespaces/{NS}/jobs/gone"),
        ("DELETE", f"/api/v1/namespaces/{NS}/secrets/gone"),
    ]
    deleted = _Api.seen[2]
    # The Job's pods go with it (the API's default for Jobs would orphan them).
    assert deleted[2].get("propagationPolicy") == ["Background"]


def test_the_jobs_state_and_its_pod(cluster: ClientCluster) -> None:
    assert cluster.job(NS, "build-1") == {"metadata": {"name": "build-1"}, "status": {"active": 1}}
    assert cluster.job(NS, "missing") is None
    pod = cluster.job_pod(NS, "build-1")
    assert pod is not None and pod["metadata"]["name"] == "build-1-x"
    assert cluster.job_pod(NS, "build-2") is None


def test_the_log_is_followed_line_by_line(cluster: ClientCluster) -> None:
    lines = list(cluster.follow_log(NS, "build-1-x", "buildkit"))
    assert lines == ["#1 load definition", "#2 RUN pip install", "#3 done"]
    (_, _, query, _) = _Api.seen[-1]
    assert query["follow"] == ["true"] and query["container"] == ["buildkit"]
