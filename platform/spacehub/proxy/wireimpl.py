"""The wire layer the proxy runs: the compiled one (`_wire`) where it was built, else the reference (`wire`).

Both have the same names and behaviour (tests/unit/test_proxy_wire_parity.py); the rest of the proxy imports
them from here only. Types come from `_wire`'s stub, so that mypyc compiles their uses as plain attribute access,
right for objects of either implementation.
"""

from __future__ import annotations

try:
    from ._wire import (
        RequestHead,
        RequestParser,
        ResponseFramer,
        ResponseHead,
        ResponseParser,
        client_response_head,
        leading_head_length,
        passes_unchanged,
        response_framing,
        upstream_request_head,
    )

    NATIVE = True
except ImportError:  # built without a C compiler, or SPACEHUB_PURE_PYTHON=1
    from .wire import (  # type: ignore[assignment]
        RequestHead,
        RequestParser,
        ResponseFramer,
        ResponseHead,
        ResponseParser,
        client_response_head,
        leading_head_length,
        passes_unchanged,
        response_framing,
        upstream_request_head,
    )

    NATIVE = False

__all__ = [
    "NATIVE",
    "RequestHead",
    "RequestParser",
    "ResponseHead",
    "ResponseFramer",
    "ResponseParser",
    "client_response_head",
    "leading_head_length",
    "passes_unchanged",
    "response_framing",
    "upstream_request_head",
]
