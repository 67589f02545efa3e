"""What the contract suite runs: the app every subject serves, and a subject (a runtime under contract)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from spacehub_runner.plugs import Artifact, Builder, BuildPlan, Handle, RunSpec, Runtime

CONTRACT_APP = """
import http.server
import os
import threading

print("contract app starting", flush=True)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        path, _, query = self.path.partition("?")
        if path == "/exit":
            code = int(query.removeprefix("code=") or "0")
            print(f"exiting with code {code}", flush=True)
            threading.Timer(0.1, os._exit, (code,)).start()
            self.close_connection = True
            return
        body = (os.environ["CONTRACT_REVISION"] + "\\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        print(format % args, flush=True)


address = (os.environ["GRADIO_SERVER_NAME"], int(os.environ["PORT"]))
http.server.ThreadingHTTPServer(address, Handler).serve_forever()
"""

SPACE_ID = 990_500  # far from any real space's id


@dataclass
class Subject:
    name: str
    make_runtime: Callable[[], Runtime]  # a fresh object each call: what a restarted process would make
    artifact: Artifact
    plan: BuildPlan
    freezable: bool  # the abilities it promises: the suite checks it has exactly these
    managed: bool
    ready_timeout_s: float = 60.0
    expect_data: dict[str, object] = field(default_factory=dict)  # in every handle it starts (e.g. the mode)
    handles: list[Handle] = field(default_factory=list)  # started by a test: stopped at teardown whatever happened

    def spec(self) -> RunSpec:
        revision = secrets.token_hex(20)
        return RunSpec(space_id=SPACE_ID, space_key="contract/app", revision=revision, plan=self.plan,
                       env={"CONTRACT_REVISION": revision})


def write_tree(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def built(builder: Builder, plan: BuildPlan, src: Path) -> Artifact:
    lines: list[str] = []
    try:
        return builder.build(plan, src, lines.append)
    except Exception:
        print("\n".join(lines))
        raise


