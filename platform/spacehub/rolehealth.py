"""Each role's own health and readiness endpoint, for roles run alone (`spacehub proxy|worker|supervisor
--health HOST:PORT`): `GET /health` checks what the role depends on (200, or 503 naming what is wrong) and
`GET /ready` says whether it takes work now (503 while starting or stopping); a proxy's also serves its
`/metrics`. A small threaded listener of its
own, so that it answers even while the role's work is busy."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from spacehub.health import Check

log = logging.getLogger(__name__)

CheckFn = Callable[[], Check]


class RoleState:
    """Started and not stopping: what `/ready` reports."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.stopping = threading.Event()

    @property
    def ready(self) -> bool:
        return self.started.is_set() and not self.stopping.is_set()


def parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {address!r}")
    return host or "127.0.0.1", int(port)


def _run_checks(checks: dict[str, CheckFn]) -> list[Check]:
    results = []
    for name, check in checks.items():
        try:
            results.append(check())
        except Exception as exc:  # noqa: BLE001 - a failing dependency is the answer
            results.append(Check(name, False, f"{type(exc).__name__}: {exc}"))
    return results


class HealthListener:
    def __init__(self, role: str, address: str, checks: dict[str, CheckFn], state: RoleState,
                 retry_after_s: int, metrics: CollectorRegistry | None = None) -> None:
        self.role, self.checks, self.state, self.retry_after_s = role, checks, state, retry_after_s
        self.metrics = metrics
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                path = self.path.split("?", 1)[0]
                if path == "/metrics" and listener.metrics is not None:
                    data = generate_latest(listener.metrics)
                    self.send_response(200)
                    self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                status, body = listener.answer(path)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 503:
                    self.send_header("Retry-After", str(listener.retry_after_s))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
                return

        self.server = ThreadingHTTPServer(parse_address(address), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name=f"{role}-health", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> HealthListener:
        self.thread.start()
        log.info("%s: health at http://%s:%s/health and /ready", self.role, *self.server.server_address[:2])
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, path: str) -> tuple[int, dict[str, object]]:
        if path == "/ready":
            ready = self.state.ready
            reason = "" if ready else ("stopping" if self.state.stopping.is_set() else "starting")
            body: dict[str, object] = {"role": self.role, "ready": ready}
            if not ready:
                body["error"] = f"{self.role} is {reason}"
            return (200 if ready else 503), body
        if path != "/health":
            return 404, {"error": f"no such path {path!r}: /health or /ready"}
        results = _run_checks(self.checks)
        failed = [check for check in results if not check.ok]
        body = {"role": self.role, "status": "unavailable" if failed else "ok",
                "checks": {check.name: {"ok": check.ok, "detail": check.detail} for check in results}}
        if failed:
            body["error"] = "; ".join(f"{check.name}: {check.detail}" for check in failed)
        return (503 if failed else 200), body
