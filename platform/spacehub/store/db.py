"""Engine and sessions, and bringing the schema up to date with Alembic.

SQLite (the embedded default, a file under the data dir) or PostgreSQL (`postgresql+psycopg://...`, the driver
from the `spacehub[postgres]` extra). A database that cannot be opened is one line naming the setting and the
cause (`DatabaseUnavailable`), never a driver's traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from spacehub.errors import ServiceUnavailable
from spacehub.store.models import Installation

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
SETTING = "SPACEHUB_DATABASE_URL"
EXAMPLES = "postgresql+psycopg://USER:PASSWORD@HOST:5432/DB or sqlite:////ABSOLUTE/PATH.db"


class DatabaseUnavailable(ServiceUnavailable):
    """The configured database cannot be used: a bad URL, a missing driver, or a server that does not answer."""

    code = "DatabaseUnavailable"


def make_engine(url: str, *, pool_size: int = 5, pool_timeout_s: float = 30.0,
                connect_timeout_s: float = 10.0) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseUnavailable(f"{SETTING} is not a database URL (expected {EXAMPLES})") from None
    try:
        if parsed.get_backend_name() == "sqlite":
            engine = create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30})

            @event.listens_for(engine, "connect")
            def _sqlite_pragmas(conn, _record):  # type: ignore[no-untyped-def]
                # WAL lets the API read while a worker writes; foreign keys are off by default in SQLite.
                cur = conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.close()

            return engine
        connect_args = {"connect_timeout": max(1, round(connect_timeout_s))} if _is_postgres(url) else {}
        # max_overflow as large as the pool: bursts may double it, never more (each connection is a backend).
        return create_engine(parsed, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size,
                             pool_timeout=pool_timeout_s, connect_args=connect_args)
    except NoSuchModuleError:
        raise DatabaseUnavailable(f"{SETTING} names an unknown database kind {parsed.drivername!r} "
                                  f"(expected {EXAMPLES})") from None
    except ModuleNotFoundError as exc:
        hint = " (install spacehub[postgres] and use postgresql+psycopg://)" if _is_postgres(url) else ""
        raise DatabaseUnavailable(f"{SETTING} needs the Python driver {exc.name!r}, which is not installed"
                                  f"{hint}") from None


def _is_postgres(url: str) -> bool:
    return url.startswith(("postgresql", "postgres"))


def check(engine: Engine) -> None:
    """Connect once, so that a server that is down or refuses us is told at start, in one line."""
    try:
        with engine.connect():
            pass
    except DBAPIError as exc:
        raise DatabaseUnavailable(f"{SETTING}: cannot open the database at "
                                  f"{engine.url.render_as_string(hide_password=True)}: {_cause(exc)}") from None


def _cause(exc: DBAPIError) -> str:
    # The driver's own words, on one line (psycopg gives a line per address it tried).
    lines = [line.strip() for line in str(exc.orig).splitlines() if line.strip()]
    return "; ".join(lines) or type(exc.orig).__name__


def migrate(url: str, revision: str = "head", *, secrets_key_file: Path | None = None) -> None:
    """Bring the schema to `revision` (head). The secrets key file lets a migration seal secrets stored before
    sealing."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if secrets_key_file is not None:
        cfg.attributes["secrets_key_file"] = secrets_key_file
    command.upgrade(cfg, revision)


class Database:
    def __init__(self, url: str, *, pool_size: int = 5, pool_timeout_s: float = 30.0,
                 connect_timeout_s: float = 10.0) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size, pool_timeout_s=pool_timeout_s,
                                  connect_timeout_s=connect_timeout_s)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Whether the open transaction has written anything (see `wrote`).
        event.listen(self._sessions, "after_flush", lambda session, _context: session.info.update(wrote=True))
        event.listen(self._sessions, "after_transaction_end",
                     lambda session, transaction: transaction.parent is None and session.info.pop("wrote", None))

    def check(self) -> None:
        check(self.engine)

    @staticmethod
    def wrote(session: Session) -> bool:
        """Has the session's open transaction written anything (flushed, or changes pending)?"""
        return bool(session.info.get("wrote") or session.new or session.dirty or session.deleted)

    def installation_id(self) -> str | None:
        """The database's id (models.Installation); None before its migration."""
        try:
            with self.session() as session:
                return session.scalars(select(Installation.id)).first()
        except SQLAlchemyError:
            return None

    def listen(self, name: str, fn: Callable[..., object]) -> None:
        """Hook `fn` to a Session event (e.g. "after_commit") of every session this database opens."""
        event.listen(self._sessions, name, fn)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
