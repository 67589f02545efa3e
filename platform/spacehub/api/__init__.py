"""The HTTP API (FastAPI): Hub-shaped paths wherever the Hub has one, spacehub's own paths only where it has none."""

from spacehub.api.app import create_app

__all__ = ["create_app"]
