"""The role commands: `spacehub api`, `spacehub proxy`, and the health listener the worker and supervisor use.

Each role runs alone against the same database and Redis (SPACEHUB_DATABASE_URL, SPACEHUB_REDIS_URL), answers
its own health and readiness, and stops gracefully on SIGTERM; `spacehub serve` runs them all on one machine.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

import click

from spacehub.health import Check
from spacehub.rolehealth import HealthListener, RoleState
from spacehub.settings import Settings

HEALTH_HELP = "Serve GET /health and /ready on HOST:PORT (e.g. 127.0.0.1:9101)."


def _logging(settings: Settings) -> None:
    from spacehub import logformat

    logformat.configure(settings.log_format)


def health_listener(role: str, settings: Settings, address: str | None, state: RoleState,
                    with_database: bool) -> HealthListener | None:
    if not address:
        return None
    from spacehub.roles import redis_checks
    from spacehub.store.db import Database

    db = Database(settings.effective_database_url) if with_database else None
    checks: dict[str, Callable[[], Check]] = redis_checks(settings, db)
    return HealthListener(role, address, checks, state, settings.retry_after_s).start()


def stop_on_sigterm(stop: threading.Event, state: RoleState) -> None:
    """SIGTERM/SIGINT: finish the pass in hand, then exit (a second one exits at once)."""
    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set():
            raise SystemExit(128 + signum)
        state.stopping.set()
        stop.set()
        logging.getLogger("spacehub.roles").info("stopping after the pass in hand")

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)


def make_commands(settings_of: Callable[..., Settings]) -> list[click.Command]:
    @click.command()
    def api() -> None:
        """Run the API and web UI alone (on SPACEHUB_API_LISTEN, or the unix socket under the data dir)."""
        from spacehub.roles import run_api
        from spacehub.startcheck import check_redis

        settings = settings_of()
        _logging(settings)
        check_redis(settings)
        run_api(settings)

    @click.command()
    @click.option("--health", "health_address", help=HEALTH_HELP)
    def proxy(health_address: str | None) -> None:
        """Run one proxy process on the public port (several may share it: SO_REUSEPORT)."""
        from spacehub.roles import run_proxy

        settings = settings_of()
        _logging(settings)
        try:
            import uvloop

            uvloop.install()
        except ImportError:  # pragma: no cover - uvloop is a dependency; plain asyncio still works
            pass
        asyncio.run(run_proxy(settings, health_address))

    return [api, proxy]
