"""Why an exchange stopped. Each maps to one reaction in the server: an error response, or a silent close."""

from __future__ import annotations

from spacehub.errors import SpacehubError


class ProxyError(SpacehubError):
    """Answered to the client with `status` and `{"error": message}` (when no response has started yet)."""

    status = 500
    code = "InternalError"


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
