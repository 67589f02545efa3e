"""A reflector (as KubeSpawner's): one list, then one watch, of this platform's pods, kept in a local cache, so
the status of every space is read from memory instead of one API request per space per tick.

The watch is renewed every `timeout_s` (the server ends it then), from the last resourceVersion seen; after a
410 Gone (that version is too old) the cache is rebuilt from a fresh list. Errors wait `retry_s` and try again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

log = logging.getLogger(__name__)

Pod = dict[str, Any]
ListFn = Callable[[], tuple[list[Pod], str]]  # -> (pods, resourceVersion of the list)
WatchFn = Callable[[str, int], Iterable[Mapping[str, Any]]]  # (resourceVersion, timeout) -> {"type", "object"}


class Gone(Exception):
    """The resourceVersion a watch started from is too old (HTTP 410): list again."""


class PodReflector:
    def __init__(self, list_pods: ListFn, watch_pods: WatchFn, timeout_s: int, retry_s: float) -> None:
        self._list = list_pods
        self._watch = watch_pods
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self._pods: dict[str, Pod] = {}
        self._lock = threading.Lock()
        self._synced = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.resource_version = ""

    # -- reading the cache ------------------------------------------------------------------------------

    def get(self, name: str) -> Pod | None:
        with self._lock:
            return self._pods.get(name)

    def pods(self) -> list[Pod]:
        with self._lock:
            return list(self._pods.values())

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    def wait_synced(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    # -- feeding it ---------------------------------------------------------------------------------------

    def replace(self, pods: list[Pod], resource_version: str) -> None:
        with self._lock:
            self._pods = {pod["metadata"]["name"]: pod for pod in pods}
            self.resource_version = resource_version
        self._synced.set()

    def apply(self, event: Mapping[str, Any]) -> None:
        """One watch event: ADDED / MODIFIED store the pod, DELETED drops it; ERROR (410) means list again."""
        kind = event.get("type")
        pod = event.get("object") or {}
        if kind == "ERROR":
            if int(pod.get("code", 0)) == 410:
                raise Gone(pod.get("message", "resource version too old"))
            raise RuntimeError(f"watch error: {pod.get('message', pod)}")
        name = (pod.get("metadata") or {}).get("name")
        if not name:
            return
        with self._lock:
            if kind == "DELETED":
                self._pods.pop(name, None)
            elif kind in ("ADDED", "MODIFIED"):
                self._pods[name] = pod
            version = (pod.get("metadata") or {}).get("resourceVersion")
            if version:
                self.resource_version = version

    def run_once(self) -> None:
        """List (when not synced), then follow one watch until the server ends it."""
        if not self.synced:
            self.replace(*self._list())
        for event in self._watch(self.resource_version, self.timeout_s):
            if self._stopping.is_set():
                return
            self.apply(event)

    # -- the thread ---------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="spacehub-pod-reflector", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.run_once()
            except Gone:
                self._synced.clear()  # list again, then watch from there
            except Exception:  # the API server restarting, a network blip: wait, then watch again
                log.warning("pod watch failed; retrying in %ss", self.retry_s, exc_info=True)
                self._stopping.wait(self.retry_s)
