"""Header rewriting, both ways, and the proxy's own answers.

The rewriting rules (design §5) live in the wire layer (`wire` documents them; `wireimpl` picks the compiled
`_wire` where it was built): the proxy sets `X-Forwarded-For/-Host/-Proto` itself and drops any the client sent,
keeps the client's `Host`, removes hop-by-hop headers (RFC 9110 §7.6.1), and for space upstreams strips the
platform's credentials and makes app cookies host-only. Framing headers (Content-Length, Transfer-Encoding,
Connection) are always written by the proxy, never copied, because it re-frames bodies itself. Here: how a
response is framed towards the client, and the complete responses the proxy answers itself.
"""

from __future__ import annotations

import json

from .wire import (
    BODY_CHUNKED,
    BODY_LENGTH,
    BODY_NONE,
    BODY_UNTIL_CLOSE,
    LAST_CHUNK,
    CredentialRules,
    is_platform_credential,
    reason_phrase,
    without_cookie,
    without_cookie_domain,
)
from .wireimpl import client_response_head, passes_unchanged, response_framing, upstream_request_head

__all__ = [
    "BODY_CHUNKED",
    "BODY_LENGTH",
    "BODY_NONE",
    "BODY_UNTIL_CLOSE",
    "LAST_CHUNK",
    "CredentialRules",
    "client_response_head",
    "error_response",
    "is_platform_credential",
    "passes_unchanged",
    "reason_phrase",
    "response_framing",
    "simple_response",
    "upstream_request_head",
    "without_cookie",
    "without_cookie_domain",
]

def simple_response(
    status: int,
    body: bytes,
    *,
    content_type: bytes,
    extra_headers: tuple[tuple[str, str], ...] = (),
    connection: bytes | None = None,
    head_request: bool = False,
) -> bytes:
    """A complete response the proxy answers itself (local routes and errors)."""
    lines = [b"HTTP/1.1 ", str(status).encode(), b" ", reason_phrase(status), b"\r\n"]
    lines += (b"Content-Type: ", content_type, b"\r\nContent-Length: ", str(len(body)).encode(), b"\r\n")
    for name, value in extra_headers:
        encoded_name, encoded_value = name.encode("latin-1"), value.encode("latin-1")
        if any(ch in encoded_name + encoded_value for ch in (b"\r", b"\n", b"\0")):
            raise ValueError(f"invalid characters in local response header {name!r}")
        lines += (encoded_name, b": ", encoded_value, b"\r\n")
    if connection is not None:
        lines += (b"Connection: ", connection, b"\r\n")
    lines.append(b"\r\n")
    if not head_request:
        lines.append(body)
    return b"".join(lines)


def error_response(
    status: int, message: str, code: str, *, close: bool, keep_alive_10: bool = False, head: bool = False
) -> bytes:
    """The proxy's own error answer: `{"error": message}` with `X-Error-Code`, the platform's error shape."""
    connection = b"close" if close else (b"keep-alive" if keep_alive_10 else None)
    return simple_response(
        status,
        json.dumps({"error": message}).encode(),
        content_type=b"application/json",
        extra_headers=(("X-Error-Code", code),),
        connection=connection,
        head_request=head,
    )
