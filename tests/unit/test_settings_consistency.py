"""Settings checked together: a contradictory configuration refuses to start with one message naming both."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from spacehub.settings import Settings


def test_the_job_limit_must_exceed_build_plus_ready_timeouts():
    with pytest.raises(ValidationError) as caught:
        Settings(job_timeout_s=200, build_timeout_s=150, ready_timeout_s=100)
    message = str(caught.value)
    assert "SPACEHUB_JOB_TIMEOUT_S" in message
    assert "SPACEHUB_BUILD_TIMEOUT_S" in message
    assert "SPACEHUB_READY_TIMEOUT_S" in message


def test_unset_job_limit_follows_the_timeouts():
    settings = Settings(build_timeout_s=60, ready_timeout_s=30)
    assert settings.build_job_timeout_s > 60 + 30
    assert Settings(job_timeout_s=500, build_timeout_s=60, ready_timeout_s=30).build_job_timeout_s == 500


@pytest.mark.parametrize(("overrides", "names"), [
    ({"wake_page_after_s": 90, "wake_timeout_s": 60}, ("SPACEHUB_WAKE_PAGE_AFTER_S", "SPACEHUB_WAKE_TIMEOUT_S")),
    ({"restart_backoff_s": 600, "restart_backoff_max_s": 300},
     ("SPACEHUB_RESTART_BACKOFF_S", "SPACEHUB_RESTART_BACKOFF_MAX_S")),
])
def test_other_pairs_that_contradict(overrides, names):
    with pytest.raises(ValidationError) as caught:
        Settings(**overrides)
    for name in names:
        assert name in str(caught.value)


def test_serve_refuses_to_start_with_one_clear_line(tmp_path):
    env = {**os.environ, "SPACEHUB_DATA_DIR": str(tmp_path / "data"), "SPACEHUB_JOB_TIMEOUT_S": "100",
           "SPACEHUB_BUILD_TIMEOUT_S": "60", "SPACEHUB_READY_TIMEOUT_S": "60", "SPACEHUB_PORT": "1"}
    done = subprocess.run([sys.executable, "-m", "spacehub", "serve"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "SPACEHUB_JOB_TIMEOUT_S (100)" in lines[0] and "SPACEHUB_BUILD_TIMEOUT_S (60)" in lines[0]
    assert not (tmp_path / "data").exists()  # refused before anything was written
