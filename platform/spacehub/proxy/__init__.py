"""The public reverse proxy: one port for the API/UI and every space (design §5).

A lean asyncio HTTP/1.1 proxy on httptools (llhttp). The resolver decides where each request goes; the proxy
parses strictly, rewrites headers (forwarding headers, hop-by-hop, platform credentials for spaces), streams
bodies both ways without buffering, pools upstream keep-alive connections and tunnels upgrades. Requests
without a body are served inside the socket callbacks (`relay`), the rest by a task each (`exchange`); see
`server`. Activity hooks and `is_activity` (Gradio's heartbeat is not activity): see `activity`.
"""

from .activity import is_activity
from .routing import Resolver, Route, Upstream
from .server import ProxyServer

__all__ = ["ProxyServer", "is_activity", "Resolver", "Route", "Upstream"]
