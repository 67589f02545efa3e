"""Activity hooks: how the proxy tells the platform that a space is being used.

`ProxyServer(on_request_start=..., on_request_end=...)` calls the first when a request to a space upstream
starts being forwarded and the second once it has ended (its response sent, or the exchange cut), so a request
counts from its start to its end and a long generation is never mistaken for idleness. A hook is called as
`hook(space_id)`, or as `hook(space_id, target)` when it accepts a second positional argument: `target` is
the request target as received (bytes, path and query, e.g. b"/gradio_api/heartbeat/abc?x=1").

With the target a hook can leave out requests that are not a person's activity: `is_activity(target)` is false
for Gradio's heartbeat stream, which an open browser tab holds for as long as it is open.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

# Gradio 5+ serves its API under /gradio_api; Gradio 4 had the heartbeat at the root.
HEARTBEAT_PREFIXES = (b"/gradio_api/heartbeat/", b"/heartbeat/")

ActivityHook = Callable[[int], object] | Callable[[int, bytes], object]


def is_activity(target: bytes) -> bool:
    """False for a request that only keeps a page's connection alive (Gradio's heartbeat stream)."""
    return not target.startswith(HEARTBEAT_PREFIXES)


def takes_target(hook: Callable[..., object]) -> bool:
    """True when `hook` can be called as `hook(space_id, target)`."""
    try:
        inspect.signature(hook).bind(0, b"/")
    except TypeError:
        return False
    except ValueError:  # no signature to inspect (some builtins): call it the plain way
        return False
    return True
