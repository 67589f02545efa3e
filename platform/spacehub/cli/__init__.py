"""The `spacehub` command."""

from spacehub.cli.main import main

__all__ = ["main"]
