"""What the proxy asks of the outside world: where a request goes (a `Route`) and who decides (a
`Resolver`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Upstream:
    """Where to send a request: a TCP `host`/`port` or a unix socket at `unix_path`."""

    host: str | None = None
    port: int | None = None
    unix_path: str | None = None

    def describe(self) -> str:
        return f"unix:{self.unix_path}" if self.unix_path else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Route:
    """The resolver's answer for one request.

    `upstream=None` means the proxy answers locally with `status`, `body` (JSON by default; an empty body
    becomes `{"error": "<reason phrase>"}`), `content_type` and `extra_headers`.
    """

    upstream: Upstream | None
    status: int = 502
    body: bytes = b""
    content_type: str = "application/json"
    extra_headers: tuple[tuple[str, str], ...] = ()
    space_id: int | None = None  # set for space upstreams (activity hooks)
    is_space: bool = False  # True: apply the app-facing header rules


class Resolver(Protocol):
    async def __call__(self, host: str, headers: list[tuple[bytes, bytes]]) -> Route:
        """`host`: the lower-cased Host header value without its port. `headers`: the client's raw headers."""
        ...
