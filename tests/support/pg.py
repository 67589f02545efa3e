"""A private PostgreSQL cluster for the test run, and the database URL each test's platform uses.

`pytest --db postgres` (or SPACEHUB_TEST_DB=postgres) runs the database-touching tests on Debian's PostgreSQL:
one cluster for the whole session (initdb into a private folder, `postgres` listening on a free loopback port and
a private socket folder), one fresh database per platform. Without it every test keeps its own SQLite file.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BACKENDS = ("sqlite", "postgres")
SUPERUSER = "postgres"


def pg_bin() -> Path:
    """The newest installed PostgreSQL's programs (Debian keeps them under /usr/lib/postgresql/<major>/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    if not found:
        raise RuntimeError("PostgreSQL is not installed (deploy/setup/system.sh installs Debian's postgresql)")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_owner(args: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root: as root, drop to the postgres user.
    return ["runuser", "-u", SUPERUSER, "--", *args] if os.geteuid() == 0 else args


@dataclass
class Cluster:
    folder: Path
    port: int
    password: str
    process: subprocess.Popen[bytes]

    @classmethod
    def start(cls, timeout: float = 60) -> Cluster:
        binaries = pg_bin()
        folder = Path(tempfile.mkdtemp(prefix="spacehub-pg-"))
        data, sockets = folder / "data", folder / "sockets"
        sockets.mkdir()
        password = secrets.token_hex(16)
        (folder / "pw").write_text(password)
        if os.geteuid() == 0:
            shutil.chown(folder, SUPERUSER)
            shutil.chown(sockets, SUPERUSER)
            shutil.chown(folder / "pw", SUPERUSER)
        subprocess.run(_as_owner([str(binaries / "initdb"), "-D", str(data), "-U", SUPERUSER, "--pwfile",
                                  str(folder / "pw"), "--auth-local=trust", "--auth-host=scram-sha-256",
                                  "-E", "UTF8", "--no-sync"]), check=True, capture_output=True)
        port = _free_port()
        log = open(folder / "postgres.log", "ab")  # noqa: SIM115 - owned by the child
        process = subprocess.Popen(
            _as_owner([str(binaries / "postgres"), "-D", str(data), "-p", str(port), "-c", "listen_addresses=127.0.0.1",
                       "-c", f"unix_socket_directories={sockets}", "-c", "fsync=off", "-c", "max_connections=300"]),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        cluster = cls(folder=folder, port=port, password=password, process=process)
        cluster._wait(timeout)
        return cluster

    def _wait(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited:\n{(self.folder / 'postgres.log').read_text()[-3000:]}")
            try:
                psycopg.connect(self.dsn("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                time.sleep(0.2)
        raise RuntimeError(f"postgres did not answer:\n{(self.folder / 'postgres.log').read_text()[-3000:]}")

    def dsn(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; its SQLAlchemy URL (the form the README documents)."""
        import psycopg

        name = f"t_{secrets.token_hex(6)}"
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # smart shutdown would wait for clients; SIGTERM is postgres' fast-ish one
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.folder)


_cluster: Cluster | None = None


def use(cluster: Cluster | None) -> None:
    """Set by the session fixture in tests/conftest.py when the run is on PostgreSQL."""
    global _cluster
    _cluster = cluster


def backend() -> str:
    return "postgres" if _cluster is not None else "sqlite"


def database_url(sqlite_file: Path) -> str:
    """The URL a test's platform should use: a fresh PostgreSQL database on a postgres run, else this SQLite file."""
    if _cluster is not None:
        return _cluster.new_database()
    return f"sqlite:///{sqlite_file}"


def current_password() -> str:
    """The superuser's password of the running cluster (tests that present a wrong one replace it)."""
    assert _cluster is not None, "no PostgreSQL cluster in this run"
    return _cluster.password
