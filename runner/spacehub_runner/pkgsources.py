"""Package sources (index URL, extra indexes, find-links) as a docker build sees them.

A build container cannot see host folders, so every *local* source (a plain folder, or a `file://` URL) is
served over HTTP for the duration of the build by a tiny read-only file server bound to the docker bridge
gateway. A folder of wheels becomes a find-links page (a plain list of links); a `file://.../simple` PEP 503
tree is served as is, together with its parent folder, because such trees usually link to
`../../files/<wheel>`. Only package files and index pages are served, under those folders only.

The result reaches uv inside the build as a shell file handed over as a BuildKit secret
(`--mount=type=secret,id=spacehub-pkgsrc`): its content (a random port, maybe index credentials) is then
neither part of any layer's cache key nor of `docker history`, so a requirements layer stays cached from build
to build.
"""

from __future__ import annotations

import errno
import html
import os
import shlex
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote, unquote, urlsplit

SECRET_ID = "spacehub-pkgsrc"
SECRET_TARGET = "/run/spacehub-pkgsrc"
# Dockerfile text that loads the sources before a `uv pip install` (the file always exists, maybe empty).
LOAD_SOURCES = f". {SECRET_TARGET} && "
# Only package files and index pages are ever served, whatever else lies in the folders.
_PACKAGE_SUFFIXES = (".whl", ".tar.gz", ".zip", ".tar.bz2", ".tgz", ".metadata", ".html")
ServerT = TypeVar("ServerT", bound=ThreadingHTTPServer)


@dataclass(frozen=True)
class Sources:
    index_url: str | None
    extra_index_urls: tuple[str, ...]
    find_links: tuple[str, ...]
    index_strategy: str = ""

    def env_script(self) -> str:
        """POSIX shell lines exporting uv's variables (uv ignores pip's config; design §6)."""
        lines = []
        if self.index_url:
            lines.append(f"export UV_DEFAULT_INDEX={shlex.quote(self.index_url)}")
        if self.extra_index_urls:
            lines.append(f"export UV_INDEX={shlex.quote(' '.join(self.extra_index_urls))}")
        if self.find_links:
            lines.append(f"export UV_FIND_LINKS={shlex.quote(','.join(self.find_links))}")
        if self.index_strategy and (self.extra_index_urls or self.find_links):
            lines.append(f"export UV_INDEX_STRATEGY={shlex.quote(self.index_strategy)}")
        return "\n".join(lines) + "\n"


def local_path(source: str) -> Path | None:
    """The host folder behind a source, or None for a remote URL."""
    parts = urlsplit(source)
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    if parts.scheme == "" and source.startswith("/"):
        return Path(source)
    return None


class _FolderServer(ThreadingHTTPServer):
    daemon_threads = True
    roots: tuple[Path, ...] = ()


class _Handler(BaseHTTPRequestHandler):
    server: _FolderServer

    def log_message(self, format: str, *args: object) -> None:
        pass  # the build log shows what uv fetched; no need for per-request noise on stderr

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _resolve(self) -> Path | None:
        raw = unquote(urlsplit(self.path).path)
        if "\0" in raw or any(part == ".." for part in raw.split("/")):
            return None
        path = Path(os.path.realpath(raw or "/"))
        for root in self.server.roots:
            if path == root or path.is_relative_to(root):
                return path
        return None

    def _serve(self, body: bool) -> None:
        path = self._resolve()
        if path is None or not path.exists():
            self.send_error(404)
            return
        if path.is_dir():
            if not self.path.split("?")[0].endswith("/"):
                self.send_response(301)
                self.send_header("Location", self.path.split("?")[0] + "/")
                self.end_headers()
                return
            index = path / "index.html"
            if index.is_file():
                path = index
            else:
                self._send(self._listing(path).encode(), "text/html; charset=utf-8", body)
                return
        if not path.is_file() or not path.name.endswith(_PACKAGE_SUFFIXES):
            self.send_error(404)
            return
        ctype = "text/html; charset=utf-8" if path.suffix == ".html" else "application/octet-stream"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(path.stat().st_size))
        self.end_headers()
        if body:
            with path.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    self.wfile.write(chunk)

    @staticmethod
    def _listing(folder: Path) -> str:
        links = [
            f'<a href="{quote(p.name)}{"/" if p.is_dir() else ""}">{html.escape(p.name)}</a><br>'
            for p in sorted(folder.iterdir())
            if p.is_dir() or p.name.endswith(_PACKAGE_SUFFIXES)
        ]
        return "<!DOCTYPE html><html><body>\n" + "\n".join(links) + "\n</body></html>\n"

    def _send(self, data: bytes, ctype: str, body: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)


def port_range(spec: str) -> range:
    """"28300-28399" -> range(28300, 28400)."""
    low, _, high = spec.strip().partition("-")
    try:
        first, last = int(low), int(high or low)
    except ValueError:
        raise ValueError(f"not a port range: {spec!r}") from None
    if not 0 < first <= last < 65536:
        raise ValueError(f"not a port range: {spec!r}")
    return range(first, last + 1)


def bind_in_range(make: Callable[[tuple[str, int]], ServerT], host: str, ports: range | None, what: str) -> ServerT:
    """A server from `make` on the first free port of `ports` (any port when None): several builds at once
    each take their own, and the egress rules let build steps reach only these ports."""
    if ports is None:
        return make((host, 0))
    for port in ports:
        try:
            return make((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    raise OSError(errno.EADDRINUSE, f"no free port for the {what} in {ports.start}-{ports.stop - 1}")


@contextmanager
def serve_sources(
    index_url: str | None,
    extra_index_urls: Sequence[str],
    find_links: Sequence[str],
    bind_host: str,
    index_strategy: str = "",
    ports: range | None = None,
) -> Iterator[Sources]:
    """Yield the sources as the build sees them, serving the local ones from `bind_host` meanwhile (on the
    first free port of `ports`: the ones the egress rules let build steps reach; any port when None)."""
    roots: list[Path] = []
    all_sources = [index_url or "", *extra_index_urls, *find_links]
    for source in all_sources:
        local = local_path(source) if source else None
        if local is not None:
            real = Path(os.path.realpath(local))
            roots.append(real)
            if real.name == "simple" and source in (index_url, *extra_index_urls):
                roots.append(real.parent)  # PEP 503 trees usually link to ../../files/<wheel>
    if not roots:
        yield Sources(index_url, tuple(extra_index_urls), tuple(find_links), index_strategy)
        return

    server = bind_in_range(lambda address: _FolderServer(address, _Handler), bind_host, ports, "package server")
    server.roots = tuple(roots)
    base = f"http://{bind_host}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="spacehub-pkgsrc", daemon=True)
    thread.start()

    def rewrite(source: str) -> str:
        local = local_path(source)
        if local is None:
            return source
        return base + quote(os.path.realpath(local)).rstrip("/") + "/"

    try:
        yield Sources(
            rewrite(index_url) if index_url else None,
            tuple(rewrite(u) for u in extra_index_urls),
            tuple(rewrite(u) for u in find_links),
            index_strategy,
        )
    finally:
        server.shutdown()
        server.server_close()
