"""What the proxy asks of the outside world: where a request goes (a `Route`) and who decides (a
`Resolver`). What else a resolver may offer is in `resolvers`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol


class Upstream:
    """Where to send a request: a TCP `host`/`port` or a unix socket at `unix_path`. Compared by value.

    It keys the connection pool, twice a request: its hash is computed once, when it is made (a tuple's is not
    kept, and would be recomputed at each lookup).
    """

    __slots__ = ("host", "port", "unix_path", "_hash")

    def __init__(self, host: str | None = None, port: int | None = None, unix_path: str | None = None) -> None:
        self.host: Final = host
        self.port: Final = port
        self.unix_path: Final = unix_path
        self._hash: Final = hash((host, port, unix_path))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Upstream):
            return NotImplemented
        return self.host == other.host and self.port == other.port and self.unix_path == other.unix_path

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"Upstream(host={self.host!r}, port={self.port!r}, unix_path={self.unix_path!r})"

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
    # Header lines (`Name: value\r\n` each) the proxy adds to the upstream's final response, e.g. the cookie
    # that pins a client to the revision it started on (spacehub.edge.gateway). Empty for almost every route.
    added_headers: bytes = b""
    # Bytes whose presence in the request's head makes `added_headers` needless (the pin's value: the client
    # already carries that cookie). Then the upstream's head can pass on unchanged, the proxy's cheapest path.
    added_unless: bytes = b""

    def added_for(self, request_head: bytes) -> bytes:
        """The header lines to add to the answer of the request whose (upstream) head is `request_head`."""
        added = self.added_headers
        if added and self.added_unless and self.added_unless in request_head:
            return b""
        return added


class Resolver(Protocol):
    async def __call__(self, host: str, headers: list[tuple[bytes, bytes]]) -> Route:
        """`host`: the lower-cased Host header value without its port. `headers`: the client's raw headers.

        Optional abilities (`resolvers`: the request target, a synchronous fast path, versioned routes) are
        checked once, when the proxy is given the resolver."""
        ...
