"""Waiting for a started app to answer HTTP: one loop, shared by runtimes (it needs only poll and logs)."""

from __future__ import annotations

import http.client
import time
from collections import deque
from collections.abc import Callable, Iterator

from spacehub.errors import StartFailed
from spacehub_runner.plugs import Handle

# How many of the app's last log lines a StartFailed message carries.
TAIL_LINES = 20

# Answers that come from something in front of the app while the app itself is not up yet: Gradio's SSR front
# (Node) answers 502 until its Python server listens, and a gateway inside a Docker app may answer 503 or 504.
NOT_UP_YET = frozenset({502, 503, 504})


def answered(status: int | None) -> bool:
    """Is an app that gave this probe answer ready? Any HTTP answer counts (a 404 too: an app that mounts Gradio
    under a sub-path, or serves nothing at the probed path, is up all the same), except the not-up-yet ones."""
    return status is not None and status not in NOT_UP_YET


def probe(target: str, path: str = "/", timeout: float = 5.0) -> int | None:
    """GET http://<target><path> once; the status code, or None when nothing answers (yet)."""
    host, _, port = target.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def tail(lines: Iterator[str], count: int = TAIL_LINES) -> list[str]:
    return list(deque(lines, maxlen=count))


def wait_ready(
    handle: Handle,
    timeout: float,
    path: str,
    *,
    poll: Callable[[Handle], int | None],
    logs: Callable[[Handle], Iterator[str]],
    interval: float = 0.05,
) -> None:
    """Return once GET `path` on the handle's target answers HTTP at all (see `answered`).

    One answer is enough, so the app's access log shows at most one probe line. Probed every `interval`
    seconds: a probe of an app that is not listening yet is a refused connection on 127.0.0.1 (nothing to speak
    of), and each poll of delay is added to every wake from sleep.

    Raise StartFailed, carrying the last log lines, if the app exits first or `timeout` seconds pass. The app
    is left as it is: stopping it is the caller's call (it may want to keep a slow app's logs streaming).
    """
    deadline = time.monotonic() + timeout
    while True:
        _raise_if_exited(handle, poll, logs)
        remaining = deadline - time.monotonic()
        status = probe(handle.target, path, timeout=max(0.5, min(5.0, remaining)))
        if answered(status):
            # Look once more now that it listens: a poll may stop an app for how it listens (the process
            # runtime's loopback rule), and the listener that answered may be new since the look above.
            _raise_if_exited(handle, poll, logs)
            return
        if time.monotonic() >= deadline:
            answer = f"it answered {status}" if status is not None else "nothing answered"
            message = f"the app was not ready within {timeout:g}s (GET {path} on {handle.target}: {answer})"
            raise StartFailed(_with_logs(message, handle, logs))
        time.sleep(interval)


def _raise_if_exited(
    handle: Handle, poll: Callable[[Handle], int | None], logs: Callable[[Handle], Iterator[str]]
) -> None:
    code = poll(handle)
    if code is not None:
        message = f"the app exited with code {code} before it was ready"
        raise StartFailed(_with_logs(message, handle, logs))


def _with_logs(message: str, handle: Handle, logs: Callable[[Handle], Iterator[str]]) -> str:
    lines = tail(logs(handle))
    if not lines:
        return f"{message}; it logged nothing"
    return f"{message}; its last log lines:\n" + "\n".join(lines)
