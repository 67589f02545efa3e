"""Activity: which requests are a person's activity."""

from __future__ import annotations

import pytest

from spacehub.proxy import is_activity


@pytest.mark.parametrize(
    ("target", "activity"),
    [
        (b"/", True),
        (b"/gradio_api/queue/join?x=1", True),
        (b"/gradio_api/heartbeat/0f3a9c", False),
        (b"/heartbeat/0f3a9c", False),  # Gradio 4
        (b"/gradio_api/heartbeats", True),
        (b"/app/gradio_api/heartbeat/0f3a9c", True),  # only Gradio's own route, at the root
        (b"/gradio_api/info", True),
        (b"/heart", True),
        (b"", True),
        (b"*", True),
    ],
)
def test_gradio_heartbeats_are_not_activity(target: bytes, activity: bool) -> None:
    assert is_activity(target) is activity
