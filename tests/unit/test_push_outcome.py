"""How a followed `spacehub push` ends, from the build status the API answers."""

from __future__ import annotations

import click
import pytest

from spacehub.cli.push import outcome

SHA = "0123456789abcdef0123"


def test_running_prints_the_url() -> None:
    status = {"status": "succeeded", "running": True, "url": "http://alice-hello.space.localhost:8000"}
    assert outcome("alice/hello", SHA, status) == "Running: http://alice-hello.space.localhost:8000"


def test_superseded_says_so_and_is_no_failure() -> None:
    status = {"status": "superseded", "running": False, "stage": "RUNNING_BUILDING", "error": "",
              "message": "queued for build"}
    message = outcome("alice/hello", SHA, status)
    assert message.startswith("Superseded: a newer revision of alice/hello was pushed before 0123456789ab ran")
    assert "RUNNING_BUILDING" not in message


def test_a_failed_build_is_an_error() -> None:
    status = {"status": "failed", "running": False, "stage": "BUILD_ERROR", "error": "pip failed", "message": ""}
    with pytest.raises(click.ClickException, match="BUILD_ERROR: pip failed"):
        outcome("alice/hello", SHA, status)
