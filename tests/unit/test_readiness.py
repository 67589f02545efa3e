"""The readiness rule: an app is ready once its port answers HTTP at all, except the answers of a front that is up
while the app behind it is not (Gradio's SSR Node front answers 502 until Python listens). Probed against a real
HTTP server on loopback."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from spacehub.errors import StartFailed
from spacehub_runner.plugs import Handle
from spacehub_runner.runtimes import readiness


class App:
    """A loopback HTTP server whose answer to every GET can be changed, counting the requests it got."""

    def __init__(self) -> None:
        self.status = 404
        self.requests: list[str] = []
        app = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                app.requests.append(self.path)
                self.send_response(app.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.target = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()


@pytest.fixture
def app() -> Iterator[App]:
    served = App()
    yield served
    served.server.shutdown()
    served.server.server_close()


def wait(target: str, timeout: float, path: str = "/theme.css") -> None:
    readiness.wait_ready(Handle("test", target), timeout, path, poll=lambda _h: None,
                         logs=lambda _h: iter(["app log line"]), interval=0.01)


@pytest.mark.parametrize("status", [200, 301, 401, 404, 500])
def test_any_answer_is_ready_after_one_probe(app: App, status: int) -> None:
    app.status = status
    wait(app.target, timeout=5)
    assert app.requests == ["/theme.css"]  # one probe: one line in the app's access log


@pytest.mark.parametrize("status", sorted(readiness.NOT_UP_YET))
def test_a_front_whose_app_is_not_up_is_not_ready(app: App, status: int) -> None:
    app.status = status
    with pytest.raises(StartFailed, match=f"(?s)answered {status}.*app log line"):
        wait(app.target, timeout=0.3)
    assert len(app.requests) > 1


def test_ready_once_the_front_stops_answering_502(app: App) -> None:
    app.status = 502
    threading.Timer(0.2, lambda: setattr(app, "status", 200)).start()
    wait(app.target, timeout=10)
    assert app.requests[-1] == "/theme.css"


def test_nothing_listening_is_not_ready() -> None:
    with socket.socket() as sock:  # a bound port that listens not: connections to it are refused
        sock.bind(("127.0.0.1", 0))
        target = f"127.0.0.1:{sock.getsockname()[1]}"
        with pytest.raises(StartFailed, match="nothing answered"):
            wait(target, timeout=0.3)


def test_an_app_stopped_by_the_look_after_its_answer_is_not_ready(app: App) -> None:
    """The runtime's poll may stop an app for how it listens (the process runtime's loopback rule); the listener
    that answered can be newer than the look before the probe, so a look after the answer decides."""
    app.status = 200
    looks = iter([None, 137])
    with pytest.raises(StartFailed, match="exited with code 137"):
        readiness.wait_ready(Handle("test", app.target), 5, "/", poll=lambda _h: next(looks),
                             logs=lambda _h: iter(["stopped: the app listens on 0.0.0.0"]), interval=0.01)
    assert app.requests == ["/"]
