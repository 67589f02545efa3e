"""Activity hooks: which requests are a person's activity, and which hooks are given the request target."""

from __future__ import annotations

import functools

import pytest

from spacehub.proxy import is_activity
from spacehub.proxy.activity import takes_target


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


def test_hooks_that_take_a_second_argument_get_the_target() -> None:
    def plain(space_id: int) -> None: ...

    def with_target(space_id: int, target: bytes) -> None: ...

    def variadic(*args: object) -> None: ...

    def keyword_only(space_id: int, *, target: bytes = b"") -> None: ...

    class Tracker:
        def start(self, space_id: int, target: bytes) -> None: ...

    assert not takes_target(plain)
    assert takes_target(with_target)
    assert takes_target(variadic)
    assert not takes_target(keyword_only)
    assert takes_target(Tracker().start)
    assert not takes_target(functools.partial(with_target, 1, b"/"))
    assert takes_target(functools.partial(with_target))
