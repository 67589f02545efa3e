"""Checks at a role's start: a backing service that is misnamed or down is one line naming the setting and the
cause, before anything else starts (the database's own check is `spacehub.store.db.check`); and a role that
starts containers (`serve`, `worker`, `supervisor`) refuses the Docker runtime unless its sandbox is in force."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import redis

from spacehub import dockerhost
from spacehub.errors import ServiceUnavailable
from spacehub.settings import Settings

SETTING = "SPACEHUB_REDIS_URL"


class RedisUnavailable(ServiceUnavailable):
    code = "RedisUnavailable"


def check_redis(settings: Settings) -> None:
    """Ping the configured Redis once (the embedded one, when no URL is set, is `serve`'s own to start)."""
    url = settings.redis_url
    if not url:
        return
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=settings.redis_connect_timeout_s,
                                      socket_timeout=settings.redis_connect_timeout_s)
    except ValueError as exc:
        raise RedisUnavailable(f"{SETTING} is not a Redis URL ({exc})") from None
    where = _where(url)
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        raise RedisUnavailable(f"{SETTING}: Redis at {where} refused the credentials: {exc}") from None
    except redis.ResponseError as exc:  # e.g. NOAUTH: a password is needed and none was given
        raise RedisUnavailable(f"{SETTING}: Redis at {where} refused us: {exc}") from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise RedisUnavailable(f"{SETTING}: cannot reach Redis at {where}: {_one_line(exc)}") from None
    finally:
        client.close()


def check_sandbox(settings: Settings) -> None:
    """Every role that starts containers runs strangers' code on the Docker runtime: it refuses to start (SystemExit,
    the message naming what is missing and the command that installs it) unless the kernel-side box is whole. A
    worker or supervisor started on its own is as much a way in as `serve`. Egress rules that are gone (a reboot)
    are put back first, where this process may (SPACEHUB_DOCKER_SANDBOX_REASSERT)."""
    if not dockerhost.uses_docker(settings):
        return
    from spacehub import sandbox
    from spacehub.sandbox import keeper

    if settings.docker_sandbox_reassert:
        try:  # rules a reboot or a flush took away: put back first (the check then judges the result)
            keeper.reassert(settings)
        except Exception as exc:  # noqa: BLE001 - e.g. no CAP_NET_ADMIN: the check below names what is missing
            logging.getLogger("spacehub.sandbox").warning("could not put back the egress rules: %s", exc)
    found = sandbox.problems(settings)
    if found:
        raise SystemExit(sandbox.refusal(found))


def _where(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname}:{parts.port or 6379}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__

