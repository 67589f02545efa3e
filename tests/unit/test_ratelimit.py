from types import SimpleNamespace

import pytest

from spacehub.ratelimit import Limit, parse_limit, peer_of
from spacehub.settings import Settings


def test_limits_parse():
    assert parse_limit("10/300") == Limit(10, 300)
    assert parse_limit("off") is None
    for bad in ("10", "0/60", "10/0", "ten/60", "10/60s"):
        with pytest.raises(ValueError, match="COUNT/SECONDS|at least 1"):
            parse_limit(bad)


def test_settings_refuse_a_malformed_limit():
    with pytest.raises(ValueError, match="COUNT/SECONDS"):
        Settings(rate_limit_writes="lots")


@pytest.mark.parametrize(("host", "peer"), [
    ("127.0.0.2", "127.0.0.2"),
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),  # one subscriber's block counts as one peer
    ("::ffff:192.0.2.7", "192.0.2.7"),
    ("not-an-address", "not-an-address"),
])
def test_peer_of(host, peer):
    assert peer_of(SimpleNamespace(client=SimpleNamespace(host=host))) == peer  # type: ignore[arg-type]
