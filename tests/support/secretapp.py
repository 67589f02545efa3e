"""A tiny space whose app answers `secret=<GREETING>`: how the backup tests see that a secret still decrypts
after a restore (the app reads it from its environment, as any app does)."""

from __future__ import annotations

from pathlib import Path

APP = """
import http.server, os

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("secret=" + os.environ.get("GREETING", "(none)")).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

where = (os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), int(os.environ["PORT"]))
http.server.ThreadingHTTPServer(where, Handler).serve_forever()
"""
README = "---\ntitle: Kept\nsdk: gradio\nsdk_version: 6.31.0\napp_file: app.py\n---\n"


def write_space(folder: Path) -> Path:
    """The space's files in `folder` (made here)."""
    folder.mkdir(parents=True)
    (folder / "README.md").write_text(README)
    (folder / "app.py").write_text(APP)
    return folder
