"""`SPACEHUB_LOG_FORMAT=json`: one JSON object per line, tracebacks included."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from spacehub import logformat


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines(capsys: pytest.CaptureFixture[str], restore_root: None) -> None:
    logformat.configure("json")
    log = logging.getLogger("spacehub.test")
    log.info("space %s is %s", "alice/demo", "RUNNING")
    try:
        raise ValueError('broken "quote"')
    except ValueError:
        log.exception("it failed")
    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert first["message"] == "space alice/demo is RUNNING"
    assert (first["level"], first["logger"]) == ("info", "spacehub.test")
    assert first["time"].endswith("+00:00")
    assert second["level"] == "error" and 'ValueError: broken "quote"' in second["exception"]


def test_text_is_the_default(capsys: pytest.CaptureFixture[str], restore_root: None) -> None:
    logformat.configure("text")
    logging.getLogger("spacehub.test").warning("plain")
    line = capsys.readouterr().err.strip()
    assert line.endswith("spacehub.test WARNING plain") and not line.startswith("{")
