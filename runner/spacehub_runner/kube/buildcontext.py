"""How a build context reaches a build pod: packed by the worker that prepared it, served by that worker over
HTTP at a one-time random path for as long as the build runs, fetched by the build pod's init container and checked
against its SHA-256.

Why so: the context is made on the worker (for a gradio space it is generated: the app, the requirements files and
the Dockerfile, which exist nowhere else), it may be hundreds of MB (a ConfigMap or Secret holds 1 MiB), and a pod
cannot read the worker's disk. Serving it from the worker needs no shared volume, no object store and no exec into
the pod (the builder's Role has none); it is the way the docker builder already serves local package sources to
build steps (`pkgsources`). The URL's token lives only in the build's inputs Secret; the digest in the Job spec
makes a swapped tarball fail the fetch. The builds namespace's NetworkPolicy lets build pods reach the workers on
these ports only.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ..pkgsources import bind_in_range, port_range


def pack(context: Path, into: Path) -> str:
    """Write `context` (without a top-level .git) as an uncompressed tarball at `into`; return its SHA-256.
    GNU format: the BusyBox tar of the BuildKit image reads its long names."""
    with tarfile.open(into, "w", format=tarfile.GNU_FORMAT) as tar:
        for entry in sorted(context.iterdir()):
            if entry.name == ".git":
                continue
            tar.add(entry, arcname=entry.name, recursive=True)
    digest = hashlib.sha256()
    with into.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _OneFileServer(ThreadingHTTPServer):
    daemon_threads = True
    path: str = ""
    file: Path = Path()


class _Handler(BaseHTTPRequestHandler):
    server: _OneFileServer

    def log_message(self, format: str, *args: object) -> None:  # no access log on the worker's output
        pass

    def do_GET(self) -> None:
        if not secrets.compare_digest(self.path, self.server.path):
            self.send_error(404)
            return
        size = self.server.file.stat().st_size
        self.send_response(200)
        self.send_header("Content-Type", "application/x-tar")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        with self.server.file.open("rb") as f:
            shutil.copyfileobj(f, self.wfile)


@contextmanager
def serve(tarball: Path, host: str, ports: str) -> Iterator[str]:
    """Serve `tarball` at a random path on `host` (the first free port of `ports`); yield its URL."""
    server = bind_in_range(lambda address: _OneFileServer(address, _Handler), host, port_range(ports),
                           "build context")
    server.path = "/" + secrets.token_urlsafe(32)
    server.file = tarball
    thread = threading.Thread(target=server.serve_forever, name="spacehub-build-context", daemon=True)
    thread.start()
    shown = f"[{host}]" if ":" in host else host
    try:
        yield f"http://{shown}:{server.server_address[1]}{server.path}"
    finally:
        server.shutdown()
        server.server_close()
