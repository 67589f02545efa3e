"""Why an exchange stopped. Each maps to one reaction in the server: an error response, or a silent close.

The proxy's own hierarchy, apart from the platform's: the proxy imports nothing of the rest of spacehub. A
resolver that refuses a request raises a `ProxyError` (its status, code and message are answered); whoever wires
a resolver to the platform maps the platform's errors to it (`spacehub.edge.gateway`).
"""

from __future__ import annotations


class ProxyError(Exception):
    """Answered to the client with `status` and `{"error": message}` (when no response has started yet)."""

    status: int = 500
    code: str = "InternalError"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code


class BadRequest(ProxyError):
    """The client's request is malformed or ambiguous; it is never forwarded and the connection is closed."""

    status = 400
    code = "BadRequest"


class HeadersTooLarge(BadRequest):
    status = 431
    code = "RequestHeaderFieldsTooLarge"


class UpstreamFailed(ProxyError):
    """The upstream could not be reached, or broke the HTTP framing of its response."""

    status = 502
    code = "BadGateway"


class ClientGone(Exception):
    """The client closed its connection (or sent EOF) while an exchange was in flight."""
