"""Activity: how the proxy tells the platform that a space is being used.

`ProxyServer(activity=RequestCounter())` calls `request_start(space_id, target)` when a request to a space
upstream starts being forwarded and `request_end(space_id, target)` once it has ended (its response sent, or the
exchange cut), so a request counts from its start to its end and a long generation is never mistaken for
idleness. `target` is the request target as received (bytes, path and query, e.g. b"/gradio_api/heartbeat/abc").

Requests that are not a person's activity are left out: `is_activity(target)` is false for Gradio's heartbeat
stream, which an open browser tab holds for as long as it is open.
"""

from __future__ import annotations

import time
from typing import Final

# Gradio 5+ serves its API under /gradio_api; Gradio 4 had the heartbeat at the root.
HEARTBEAT_PREFIXES: Final = (b"/gradio_api/heartbeat/", b"/heartbeat/")

_now: Final = time.time  # bound once: called for every request


def is_activity(target: bytes) -> bool:
    """False for a request that only keeps a page's connection alive (Gradio's heartbeat stream)."""
    # Every request passes here twice: most are told apart by their second byte ('g' and 'h' start the
    # heartbeat paths), before any prefix is compared.
    if len(target) < 2 or (target[1] != 0x67 and target[1] != 0x68):
        return True
    return not target.startswith(HEARTBEAT_PREFIXES)


class SpaceCount:
    """One space's count: requests in flight, requests ended (for /metrics), when one last ended, when the count
    last fell to zero (epoch seconds, 0.0: never), and whether any of it changed since the publisher last took the
    changes."""

    __slots__ = ("in_flight", "requests", "last_active", "last_idle", "dirty")

    def __init__(self) -> None:
        self.in_flight = 0
        self.requests = 0
        self.last_active = 0.0
        self.last_idle = 0.0
        self.dirty = False


class RequestCounter:
    """Requests in flight per space, and when a request to each space last ended and when its count last fell to
    zero: a `SpaceCount` per space, in `spaces`.

    Its `request_start` / `request_end` are the proxy's activity hooks as `spacehub serve` wires them
    (`spacehub.edge.activity.ActivityTracker` publishes what they count): one dict lookup and a few field updates on the
    request path, here so that they run compiled with the rest of the proxy. Both skip the same requests
    (`is_activity`), so the count stays balanced. `take_dirty()`: the spaces changed since it was last called.
    """

    def __init__(self) -> None:
        self.spaces: dict[int, SpaceCount] = {}
        self._dirty: list[int] = []

    def _count(self, space_id: int) -> SpaceCount:
        count = self.spaces.get(space_id)
        if count is None:
            count = self.spaces[space_id] = SpaceCount()
        return count

    def request_start(self, space_id: int, target: bytes) -> None:
        # Only the count: a space with requests open is published at every flush, as active at that flush, from
        # `in_flight` itself (spacehub.edge.activity), so a start needs neither a time nor a mark of its own.
        if not is_activity(target):
            return
        self._count(space_id).in_flight += 1

    def request_end(self, space_id: int, target: bytes) -> None:
        if not is_activity(target):
            return
        count = self._count(space_id)
        count.requests += 1
        now = _now()
        if count.in_flight <= 1:
            count.in_flight = 0
            count.last_idle = now
        else:
            count.in_flight -= 1
        count.last_active = now
        if not count.dirty:
            count.dirty = True
            self._dirty.append(space_id)

    def busy(self) -> list[int]:
        """The spaces with requests in flight."""
        return [space_id for space_id, count in self.spaces.items() if count.in_flight > 0]

    def take_dirty(self) -> set[int]:
        dirty, self._dirty = self._dirty, []
        for space_id in dirty:
            self.spaces[space_id].dirty = False
        return set(dirty)
