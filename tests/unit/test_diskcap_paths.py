"""Which paths of a container get its capped scratch disk."""

from __future__ import annotations

import pytest

from spacehub_runner.diskcap import writable_paths


@pytest.mark.parametrize(
    ("home", "workdir", "expected"),
    [
        ("/home/user", "/home/user/app", ["/tmp", "/var/tmp", "/home/user"]),  # the app dir is inside the home
        ("/home/user", "/app", ["/tmp", "/var/tmp", "/home/user", "/app"]),  # a Dockerfile's own WORKDIR
        ("/home/user", "/", ["/tmp", "/var/tmp", "/home/user"]),  # never the root itself
        ("/home/user", "", ["/tmp", "/var/tmp", "/home/user"]),
        ("/", "/tmp/work", ["/tmp", "/var/tmp"]),  # nested in /tmp: /tmp covers it
        ("/home/user", "/data/app", ["/tmp", "/var/tmp", "/home/user"]),  # /data is the persistent volume's
        ("/home/user/", "relative", ["/tmp", "/var/tmp", "/home/user"]),
    ],
)
def test_writable_paths(home: str, workdir: str, expected: list[str]) -> None:
    assert writable_paths(home, workdir) == expected
