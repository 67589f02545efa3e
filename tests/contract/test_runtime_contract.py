"""The contract every runtime keeps (design §3): start, ready, poll, logs, idempotent stop, re-adoption after a
restart from the persisted JSON handle alone, and freeze/thaw where offered. Parametrised over every runtime
(conftest.SUBJECTS): the process runtime (plain and through its fork-server), the docker runtime, the fakes.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable

import pytest
from subjects import Subject

from spacehub.errors import StartFailed
from spacehub_runner import backends
from spacehub_runner.plugs import Handle, Runtime, WiredRuntime
from spacehub_runner.runtimes import readiness

pytestmark = pytest.mark.timeout(300)

WAIT_S = 30.0  # for things the app does on its own time (a log line written, an exit noticed)


def started(subject: Subject, runtime: Runtime) -> Handle:
    handle = runtime.start(subject.spec(), subject.artifact)
    subject.handles.append(handle)
    backends.wait_ready(runtime, handle, subject.ready_timeout_s, subject.plan)
    return handle


def persisted(handle: Handle) -> Handle:
    """The handle as another process finds it: through JSON (SQL keeps it so)."""
    return Handle.from_json(json.loads(json.dumps(handle.to_json())))


def get(handle: Handle, path: str = "/", timeout: float = 10.0) -> tuple[int, str] | None:
    """(status, body) of GET `path` on the app, or None when nothing answers within `timeout`."""
    host, _, port = handle.target.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {WAIT_S:g}s: {what}")
        time.sleep(0.05)


def test_start_returns_a_json_handle_and_the_ready_app_serves_its_revision(subject: Subject) -> None:
    runtime = subject.make_runtime()
    spec = subject.spec()
    handle = runtime.start(spec, subject.artifact)
    subject.handles.append(handle)
    assert handle.runtime == runtime.name
    assert persisted(handle) == handle
    assert {key: handle.data.get(key) for key in subject.expect_data} == subject.expect_data
    host, _, port = handle.target.rpartition(":")
    assert host == "127.0.0.1" and int(port) > 0  # loopback only: the proxy is the way in
    backends.wait_ready(runtime, handle, subject.ready_timeout_s, subject.plan)
    assert runtime.poll(handle) is None
    assert get(handle) == (200, spec.revision + "\n")


def test_logs_hold_what_the_app_wrote(subject: Subject) -> None:
    runtime = subject.make_runtime()
    handle = started(subject, runtime)
    assert get(handle, "/contract-log-probe") is not None
    eventually(lambda: any("/contract-log-probe" in line for line in runtime.logs(handle)),
               "the request's log line in the app's logs")
    assert all("\n" not in line for line in runtime.logs(handle))  # lines, not chunks


def test_poll_reports_the_apps_own_exit_code(subject: Subject) -> None:
    runtime = subject.make_runtime()
    handle = started(subject, runtime)
    get(handle, "/exit?code=3")
    eventually(lambda: runtime.poll(handle) is not None, "the exit seen by poll")
    assert runtime.poll(handle) == 3
    with pytest.raises(StartFailed, match="exited with code 3"):
        backends.wait_ready(runtime, handle, 5, subject.plan)  # an exited app is never ready


def test_stop_ends_the_app_and_is_idempotent(subject: Subject) -> None:
    runtime = subject.make_runtime()
    handle = started(subject, runtime)
    runtime.stop(handle)
    assert runtime.poll(handle) is not None
    assert readiness.probe(handle.target, timeout=2.0) is None  # nothing answers there any more
    runtime.stop(handle)  # again: nothing to do, no error
    subject.make_runtime().stop(persisted(handle))  # and from another runtime object
    assert runtime.poll(handle) is not None


def test_a_new_runtime_adopts_the_app_from_its_persisted_handle(subject: Subject) -> None:
    first = subject.make_runtime()
    handle = started(subject, first)
    saved = json.dumps(handle.to_json())
    del first  # the worker that started it restarts: only the JSON handle is left

    again = subject.make_runtime()
    adopted = Handle.from_json(json.loads(saved))
    assert again.poll(adopted) is None
    assert get(adopted, "/after-restart") is not None
    eventually(lambda: any("/after-restart" in line for line in again.logs(adopted)), "logs read after a restart")
    again.stop(adopted)
    assert subject.make_runtime().poll(adopted) is not None


def test_abilities_are_those_promised(subject: Subject) -> None:
    plugged = WiredRuntime.of(subject.make_runtime())
    assert (plugged.freezer is not None) == subject.freezable
    assert (plugged.managed is not None) == subject.managed


def test_freeze_and_thaw_where_offered(subject: Subject) -> None:
    runtime = subject.make_runtime()
    freezer = WiredRuntime.of(runtime).freezer
    if freezer is None:
        assert not subject.freezable  # (and test_abilities_are_those_promised holds it to that)
        return
    handle = started(subject, runtime)
    assert not freezer.is_frozen(handle)
    freezer.freeze(handle)
    freezer.freeze(handle)  # idempotent
    # (A signal-based freeze lands a moment after the call returns.)
    eventually(lambda: freezer.is_frozen(handle), "the app seen frozen")
    assert runtime.poll(handle) is None  # frozen is still running
    assert get(handle, timeout=1.0) is None  # a frozen app answers nothing
    freezer.thaw(handle)
    freezer.thaw(handle)  # idempotent
    assert not freezer.is_frozen(handle)
    answer = get(handle)
    assert answer is not None and answer[0] == 200

    freezer.freeze(handle)  # a frozen app still stops, and is seen frozen by a new runtime object
    other = WiredRuntime.of(subject.make_runtime()).freezer
    assert other is not None
    eventually(lambda: other.is_frozen(persisted(handle)), "the app seen frozen by a new runtime object")
    runtime.stop(handle)
    assert runtime.poll(handle) is not None
    assert not freezer.is_frozen(handle)


def test_managed_apps_are_listed_where_offered(subject: Subject) -> None:
    runtime = subject.make_runtime()
    managed = WiredRuntime.of(runtime).managed
    if managed is None:
        assert not subject.managed
        return
    handle = started(subject, runtime)
    listed = {h.data["container_id"]: h for h in managed.list_managed()}
    assert handle.data["container_id"] in listed
    found = listed[handle.data["container_id"]]
    assert found.target == handle.target
    assert found.data["space_id"] == handle.data["space_id"]
    assert found.data["revision"] == handle.data["revision"]
