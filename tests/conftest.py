import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support import pg  # noqa: E402
from support.faults import RedisServer  # noqa: E402

# Benchmarks (`make bench`) are scripts, not tests: never collected, even when named on the command line.
collect_ignore = ["bench"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--db", choices=pg.BACKENDS, default=os.environ.get("SPACEHUB_TEST_DB", "sqlite"),
                     help="Database of the platforms the tests start (`make test` runs the database-touching "
                     "tests once more with `--db postgres`, on a private PostgreSQL cluster)")


@pytest.fixture(scope="session", autouse=True)
def database_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """On `--db postgres`, one PostgreSQL cluster for the session; each platform gets a fresh database in it."""
    if request.config.getoption("--db") != "postgres":
        yield "sqlite"
        return
    cluster = pg.Cluster.start()
    pg.use(cluster)
    try:
        yield "postgres"
    finally:
        pg.use(None)
        cluster.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server of the test's own (support.faults.RedisServer), stopped at the end."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()
