"""The public reverse proxy: one port for the API/UI and every space (design §5).

A lean asyncio HTTP/1.1 proxy on llhttp (`wireimpl`: the compiled wire layer, or its reference on httptools).
The resolver decides where each request goes; the proxy parses strictly, rewrites headers (forwarding headers,
hop-by-hop, platform credentials for spaces), streams bodies both ways without buffering, pools upstream
keep-alive connections and tunnels upgrades. Requests
without a body are served inside the socket callbacks (`relay`), the rest by a task each (`exchange`); see
`server`. The activity counter and `is_activity` (Gradio's heartbeat is not activity): see `activity`.

The wire layer (Cython) and the per-request modules (mypyc) are compiled when the package is built (`setup.py`);
`compiled()` and `wireimpl.NATIVE` tell whether this process runs those builds or the plain-Python source (same
behaviour, slower).
"""

from .activity import is_activity
from .routing import Resolver, Route, Upstream
from .server import ProxyServer

__all__ = ["ProxyServer", "compiled", "is_activity", "Resolver", "Route", "Upstream"]


def compiled() -> bool:
    """True when the proxy's per-request modules run as the mypyc-compiled extension, not as Python source."""
    from . import relay

    origin = relay.__spec__.origin if relay.__spec__ is not None else None
    return origin is not None and not origin.endswith(".py")
