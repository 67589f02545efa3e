"""The HTTP API (FastAPI): Hub-shaped paths wherever the Hub has one, spacehub's own paths only where it has none.

Its routes are installed on the application by `spacehub.app`, beside the web UI."""
