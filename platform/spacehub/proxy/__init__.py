"""The public reverse proxy: one port for the API/UI and every space (design §5).

A lean asyncio HTTP/1.1 proxy on httptools (llhttp). The resolver decides where each request goes; the proxy
parses strictly, rewrites headers (forwarding headers, hop-by-hop, platform credentials for spaces), streams
bodies both ways without buffering, pools upstream keep-alive connections and tunnels upgrades.
"""

from .routing import Resolver, Route, Upstream
from .server import ProxyServer

__all__ = ["ProxyServer", "Resolver", "Route", "Upstream"]
