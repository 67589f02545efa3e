"""Job-runner tokens (spacehub_runner.liveness): judged only where the pid means something, i.e. on this host
and in this pid namespace; elsewhere the reconciler must fall back to RQ's word (None)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from spacehub_runner import liveness

ME = """
import sys
sys.path[:0] = {path!r}
from spacehub_runner import liveness
print(liveness.me(), flush=True)
sys.stdin.read()  # alive until the test closes our stdin
"""


def test_this_process_is_alive_and_a_finished_one_is_not() -> None:
    assert liveness.alive(liveness.me()) is True
    child = subprocess.Popen([sys.executable, "-c", ME.format(path=sys.path)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdin is not None
    token = child.stdout.readline().strip()
    assert liveness.alive(token) is True
    child.stdin.close()
    child.wait(30)
    assert liveness.alive(token) is False


def test_a_pid_reused_by_a_later_process_is_not_the_runner() -> None:
    where, pid, started = liveness.me().rsplit(":", 2)
    assert liveness.alive(f"{where}:{pid}:{int(started) + 1}") is False


def test_tokens_of_another_host_or_of_no_namespace_cannot_be_judged_here() -> None:
    where, pid, started = liveness.me().rsplit(":", 2)
    host = where.rpartition("/")[0]
    assert liveness.alive(f"elsewhere/{where.rpartition('/')[2]}:{pid}:{started}") is None
    assert liveness.alive(f"{host}:{pid}:{started}") is None  # the old form, from before namespaces were named
    assert liveness.alive("not a token") is None
    assert liveness.alive(None) is None


def test_a_process_in_another_pid_namespace_of_this_host_cannot_be_judged_here() -> None:
    """As roles in containers of their own on the host's network: same hostname, another pid namespace, where
    the runner's pid (1 there, say) names some other process here or none."""
    assert os.geteuid() == 0 and shutil.which("unshare"), "needs root and util-linux's unshare (as CI has)"
    child = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c",
                              ME.format(path=sys.path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdin is not None
    try:
        token = child.stdout.readline().strip()
        where, pid, _started = token.rsplit(":", 2)
        assert where.partition("/")[0] == liveness.me().partition("/")[0]  # the same hostname
        assert where != liveness.me().rsplit(":", 2)[0]  # another pid namespace
        assert liveness.alive(token) is None
    finally:
        child.stdin.close()
        child.wait(30)
