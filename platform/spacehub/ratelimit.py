"""Rate limits on what an attacker repeats: sign-in failures, invalid tokens, account creation, writes (uploads,
commits, pushes, duplicates) and build starts. Over a limit: 429 with `Retry-After` and a JSON error.

Each action is counted per peer address and, where there is one, per account, in Redis (so every API process
shares the counts). A count lives in a window that opens at its first event and lasts the limit's seconds; a key
at its limit is refused until that window closes. The address is the connection's peer as the proxy saw it: the
proxy drops any `X-Forwarded-For` a client sends and writes its own, which uvicorn (reached only through the
proxy's private socket) turns into the request's client address, so no header a client writes moves a count.
IPv6 peers are counted per /64, the block one subscriber gets.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from typing import Literal

import redis
from sqlalchemy.orm import Session
from starlette.requests import HTTPConnection

from spacehub import accounts
from spacehub.context import Platform
from spacehub.errors import SpacehubError, Unauthorized
from spacehub.settings import Settings
from spacehub.store.models import Token, User

Action = Literal["signin", "token", "signup", "write", "build"]
KEY_PREFIX = "spacehub:ratelimit:"
NAMES: dict[Action, str] = {"signin": "failed sign-ins", "token": "invalid tokens", "signup": "new accounts",
                            "write": "uploads, commits and pushes", "build": "build starts"}

# One script for every check, so checking several keys and counting them is one atomic step.
# ARGV: mode ("check": count nothing; "take": count unless refused; "hit": count always), then (limit, window ms)
# for each key. Returns the milliseconds until the latest full window among the keys closes (0: none full).
_SCRIPT = """
local mode = ARGV[1]
local retry = 0
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[2 * i])
  local n = tonumber(redis.call('GET', key) or '0')
  if n >= limit then
    local ttl = redis.call('PTTL', key)
    if ttl < 0 then ttl = tonumber(ARGV[2 * i + 1]) end
    if ttl > retry then retry = ttl end
  end
end
if mode == 'check' or (mode == 'take' and retry > 0) then return retry end
for i, key in ipairs(KEYS) do
  if redis.call('INCR', key) == 1 then redis.call('PEXPIRE', key, ARGV[2 * i + 1]) end
end
return retry
"""


class RateLimited(SpacehubError):
    status = 429
    code = "RateLimited"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Limit:
    count: int
    window_s: int


def parse_limit(text: str) -> Limit | None:
    """`COUNT/SECONDS` (e.g. `10/300`: ten per five minutes), or `off`."""
    if text.strip().lower() == "off":
        return None
    count, _, window = text.partition("/")
    try:
        limit = Limit(int(count), int(window))
    except ValueError:
        raise ValueError(f"{text!r} is not COUNT/SECONDS (e.g. 10/300) or off") from None
    if limit.count < 1 or limit.window_s < 1:
        raise ValueError(f"{text!r}: the count and the seconds must both be at least 1")
    return limit


def limits_of(settings: Settings) -> dict[tuple[Action, str], Limit | None]:
    """(action, who) -> limit, `who` being `address` or `account`."""
    return {
        ("signin", "address"): parse_limit(settings.rate_limit_signin_address),
        ("signin", "account"): parse_limit(settings.rate_limit_signin_account),
        ("token", "address"): parse_limit(settings.rate_limit_invalid_token),
        ("signup", "address"): parse_limit(settings.rate_limit_signup),
        ("signup", "account"): parse_limit(settings.rate_limit_signup),
        ("write", "address"): parse_limit(settings.rate_limit_writes),
        ("write", "account"): parse_limit(settings.rate_limit_writes),
        ("build", "address"): parse_limit(settings.rate_limit_builds),
        ("build", "account"): parse_limit(settings.rate_limit_builds),
    }


def peer_of(conn: HTTPConnection) -> str:
    """The real peer address (see the module docstring), IPv6 reduced to its /64."""
    host = conn.client.host if conn.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class RateLimiter:
    def __init__(self, conn: redis.Redis, settings: Settings) -> None:
        self.limits = limits_of(settings)
        self.script = conn.register_script(_SCRIPT)

    def check(self, action: Action, address: str, account: str | None = None) -> None:
        """Refuse (RateLimited) when this address or account is at the limit; count nothing."""
        self._run("check", action, address, account)

    def take(self, action: Action, address: str, account: str | None = None) -> None:
        """Count one event, or refuse it (uncounted) when the address or account is at the limit."""
        self._run("take", action, address, account)

    def hit(self, action: Action, address: str, account: str | None = None) -> None:
        """Count one event that already happened (a failure)."""
        self._run("hit", action, address, account)

    def _run(self, mode: str, action: Action, address: str, account: str | None) -> None:
        keys, args = [], [mode]
        for who, value in (("address", address), ("account", account)):
            limit = self.limits.get((action, who))
            if limit is None or value is None:
                continue
            keys.append(f"{KEY_PREFIX}{action}:{who}:{value.lower()}")
            args += [str(limit.count), str(limit.window_s * 1000)]
        if not keys:
            return
        retry_ms = int(self.script(keys=keys, args=args))
        if retry_ms > 0 and mode != "hit":
            retry_s = max(1, math.ceil(retry_ms / 1000))
            raise RateLimited(f"too many {NAMES[action]} from this address or account: try again in {retry_s} s",
                              retry_after_s=retry_s)


def limiter_of(platform: Platform) -> RateLimiter:
    return RateLimiter(platform.redis, platform.settings)


def authenticate_token(limiter: RateLimiter, session: Session, secret: str, address: str) -> tuple[User, Token]:
    """accounts.authenticate_token, with invalid (or expired) tokens counted per address: past the limit, every
    token from that address waits, the right one too (else guessing would go on, answered by the 429s)."""
    limiter.check("token", address)
    try:
        return accounts.authenticate_token(session, secret)
    except Unauthorized:
        limiter.hit("token", address)
        raise
